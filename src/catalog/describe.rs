//! What `event-relay catalog list` and `catalog show` read from the compiled catalogs: where
//! each event's definition comes from, and the properties in name order.

use super::{Catalog, Catalogs, Format, NameMap, Prop};
use crate::envelope::Source;
use std::borrow::Cow;

/// The origin shown for the built-in catalogs' events.
pub const BUILT_IN: &str = "built in";

/// Where the definition of `event` in the catalog of `source` comes from: `built in`, or the
/// catalog file that added or changed it. The one place that answers this.
pub fn event_origin<'a>(catalogs: &'a Catalogs, source: Source, event: &str) -> Cow<'a, str> {
    match catalogs.origins.get(&(source, event.to_string())) {
        Some(path) => Cow::Owned(path.display().to_string()),
        None => Cow::Borrowed(BUILT_IN),
    }
}

/// The catalogs in display order, each with its source.
pub fn in_order(catalogs: &Catalogs) -> [(Source, &Catalog); 2] {
    [
        (Source::Komo, &catalogs.komo),
        (Source::Acemate, &catalogs.acemate),
    ]
}

/// A property table in name order.
pub fn sorted(props: &NameMap<Prop>) -> Vec<&Prop> {
    let mut v: Vec<&Prop> = props.values().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// A format as a catalog file names it.
pub fn format_name(f: Format) -> &'static str {
    match f {
        Format::Uuid => "uuid",
        Format::Guid => "guid",
        Format::Email => "email",
        Format::DateTime => "date-time",
        Format::Uri => "uri",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names shown are the names the catalog loader reads.
    #[test]
    fn format_names_round_trip_through_the_loader() {
        for name in ["uuid", "guid", "email", "date-time", "uri"] {
            let text = format!(
                r#"{{"catalog": "t", "events": {{"e": {{"properties": {{"p": {{"type": "string", "format": "{name}"}}}}}}}}}}"#
            );
            let c = Catalog::from_json(&text).unwrap();
            let f = c.events["e"].properties["p"].format.unwrap();
            assert_eq!(format_name(f), name);
        }
    }

    #[test]
    fn builtin_events_are_built_in() {
        let c = Catalogs::builtin().unwrap();
        assert_eq!(event_origin(&c, Source::Komo, "CardViewed"), BUILT_IN);
        let names: Vec<&str> = sorted(&c.komo.common)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names[..3], ["event", "id", "site_id"]);
    }
}
