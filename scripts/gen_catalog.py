#!/usr/bin/env python3
"""Generate machine-readable event catalogs (and test fixtures) from the spec texts.

Usage:
    scripts/gen_catalog.py [SPECS_DIR] [--fixtures] [--check]

SPECS_DIR defaults to $EVENT_RELAY_SPECS_DIR, else ../shared/specs relative to
the repository root (the upstream spec texts are not part of the repository).
Writes catalog/komo.json and catalog/acemate.json (and, with --fixtures,
tests/fixtures/valid_events.jsonl and tests/fixtures/invalid_events.jsonl).
With --check nothing is written; exits 1 if any committed file differs from
what would be generated.

Python 3 standard library only. Output is deterministic (sorted keys, 2-space
indent, trailing newline) so re-running reproduces the files byte-for-byte.
"""

import argparse
import copy
import os
import datetime as dt
import json
import re
import sys
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = Path(os.environ.get("EVENT_RELAY_SPECS_DIR") or REPO_ROOT / ".." / "shared" / "specs")

KOMO_FILES = ["komo-card-events.txt", "komo-site-events.txt", "komo-watch-to-win-events.txt"]
ACEMATE_FILES = ["acemate-posthog-events.txt"]
KOMO_COMMON = ["id", "event", "timestamp", "site_id", "site_name", "user_session_id", "user_profile_id"]
KOMO_PSEUDO = {"User attributes": "user_attributes", "Data capture fields": "data_capture"}
EXPECTED_KOMO_EVENTS = 10
EXPECTED_ACEMATE_EVENTS = 71


class SpecError(Exception):
    pass


def die(msg):
    raise SpecError(msg)


# --------------------------------------------------------------------------- Komo

KOMO_TYPES = {  # spec type (lower-cased) -> (json type, format)
    "guid": ("string", "guid"),  # any 8-4-4-4-12 hex GUID: Komo's spec sets no uuid version
    "string": ("string", None),
    "timestamp": ("string", "date-time"),
    "number": ("number", None),
    "boolean": ("boolean", None),
}
# Concatenated row ("idGuidA unique ...false"): lower-case name, type word, description, optional flag.
KOMO_ROW_RE = re.compile(
    r"^(User attributes|Data capture fields|[a-z_]+?)(Guid|GUID|string|String|Timestamp|TimeStamp|number|boolean)(.*?)(true|false|True|False)$"
)


def komo_rows(table_lines):
    """Yield (name, type, description, optional) from one table; handles both layouts."""
    lines = [l.strip() for l in table_lines if l.strip()]
    if lines and all(KOMO_ROW_RE.match(l) for l in lines):
        for l in lines:
            m = KOMO_ROW_RE.match(l)
            yield m.group(1), m.group(2), m.group(3).strip(), m.group(4)
        return
    if len(lines) % 4:
        die("komo: cannot split table into 4-line rows: %r" % lines[:4])
    for i in range(0, len(lines), 4):
        yield tuple(lines[i:i + 4])


def komo_prop(name, typ, desc, optional, where):
    t = KOMO_TYPES.get(typ.lower())
    if not t:
        die("komo %s: unknown type %r for %s" % (where, typ, name))
    if optional.lower() not in ("true", "false"):
        die("komo %s: bad Optional %r for %s" % (where, optional, name))
    # An optional Komo field may come as null (e.g. user_profile_id of a signed-out user).
    required = optional.lower() == "false"
    p = {"type": t[0], "required": required, "nullable": not required, "description": desc}
    if t[1]:
        p["format"] = t[1]
    return p


def parse_komo_file(path):
    text = path.read_text()
    events = {}
    # Each event section ends with a table introduced by "NameTypeDescriptionOptional".
    chunks = text.split("NameTypeDescriptionOptional")
    for i in range(1, len(chunks)):
        before, table = chunks[i - 1], chunks[i]
        # The table runs until the first blank line (the next section title follows it).
        table_lines = table.strip("\n").split("\n\n")[0].split("\n")
        m = list(re.finditer(r'^"event":\s*"(\w+)"', before, re.M))
        if not m:
            die("komo %s: no event name before table %d" % (path.name, i))
        name = m[-1].group(1)
        ex_start = before.rfind("Example data")
        header = before[:ex_start].rstrip().split("\n\n")
        desc = next((h.strip() for h in reversed(header) if h.strip().startswith("Raised")), "")
        example = before[ex_start:]
        example_keys = re.findall(r'^"(\w+)":', example, re.M)
        props, extra, common = {}, [], {}
        for row in komo_rows(table_lines):
            pname, typ, pdesc, opt = row
            if pname in KOMO_PSEUDO:
                extra.append(KOMO_PSEUDO[pname])
                continue
            if pname in props or pname in common:
                die("komo %s: duplicate property %s" % (name, pname))
            p = komo_prop(pname, typ, pdesc, opt, name)
            (common if pname in KOMO_COMMON else props)[pname] = p
        if sorted(common) != sorted(KOMO_COMMON):
            die("komo %s: common fields %s" % (name, sorted(common)))
        missing = [k for k in list(common) + list(props) if k not in example_keys]
        if missing:
            die("komo %s: table props not in example: %s" % (name, missing))
        if name == "CardAction":
            a = props["action"]
            a["enum"] = re.findall(r'"(\w+)":', a["description"])
            if a["enum"] != ["Competition", "ExternalLink", "ScrollToCard"]:
                die("komo CardAction.action enum parse: %r" % a["enum"])
            a["note"] = "enum taken from the quoted values in the spec description"
            props["link_to"]["note"] = ("no uri format: the spec says it holds a link OR a card Id; "
                                        "spec example is a URL")
        extra_keys = "+".join(extra) if extra else "none"
        if extra_keys not in ("user_attributes", "user_attributes+data_capture"):
            die("komo %s: unexpected extra rows %r" % (name, extra))
        events[name] = ({"description": desc, "properties": props, "extra_keys": extra_keys}, common)
    return events


def build_komo(specs):
    events, common = {}, None
    for fname in KOMO_FILES:
        for name, (ev, c) in parse_komo_file(specs / fname).items():
            if name in events:
                die("komo: duplicate event %s" % name)
            if common is None:
                common = c
            elif c != common:
                die("komo %s: common field definitions differ from the first event" % name)
            events[name] = ev
    if len(events) != EXPECTED_KOMO_EVENTS:
        die("komo: expected %d events, got %d: %s" % (EXPECTED_KOMO_EVENTS, len(events), sorted(events)))
    return {"catalog": "komo", "spec_files": sorted(KOMO_FILES), "common": common, "identify": {},
            "events": events}


# ------------------------------------------------------------------------ acemate

ACE_HEADER_RE = re.compile(r"^(\$?\w+) Webhook$")
ACE_ROW_RE = re.compile(r"^\| (\w+)( required)? \| (.*?) ?\|$")
ACE_ORPHAN_RE = re.compile(r"^(.+?) \| \|$")  # "number or number | |": row whose name cell was lost
ACE_TYPE_RE = re.compile(r"^(string|number|integer|boolean|object|Array of (\w+?)s)( or (null|number|string))?(?= |$)")


def parse_ace_type(rest, where):
    m = ACE_TYPE_RE.match(rest)
    if not m:
        die("acemate %s: cannot parse type in %r" % (where, rest))
    p, note = {}, []
    if m.group(2):
        p["type"] = "array"
        p["items"] = {"type": m.group(2)}
    else:
        p["type"] = m.group(1)
    alt = m.group(4)
    p["nullable"] = alt == "null"
    if alt and alt != "null" and alt != p["type"]:
        die("acemate %s: unsupported union %r" % (where, m.group(0)))
    if alt == p["type"]:
        note.append("spec type reads '%s'; treated as plain %s" % (m.group(0), p["type"]))
    rest = rest[m.end():].strip()
    fm = re.match(r"^<([\w-]+)>\s*", rest)
    if fm:
        p["format"] = fm.group(1)
        rest = rest[fm.end():]
    pm = re.match(r"^\^\S*?\.\.\.\s*", rest)  # truncated regex pattern, e.g. uuid version [1-8]
    if pm:
        rest = rest[pm.end():]
    dm = re.match(r"^Default: (\S+)\s*", rest)
    if dm:
        p["default"] = json.loads(dm.group(1))
        rest = rest[dm.end():]
    em = re.match(r'^(Items Enum|Enum|Value): ((?:"[^"]*" ?)+)\s*', rest)
    if em:
        vals = re.findall(r'"([^"]*)"', em.group(2))
        if em.group(1) == "Items Enum":
            p["items"]["enum"] = vals
        else:
            p["enum"] = vals
        if em.group(1) == "Value":
            note.append("spec gives a single constant 'Value: \"%s\"'; encoded as a one-element enum" % vals[0])
        rest = rest[em.end():]
    p["description"] = rest.strip()
    if "predefined or custom" in p["description"] and "enum" in p.get("items", {}):
        # The spec lists suggestions, not a closed set: custom values must pass.
        vals = p["items"].pop("enum")
        note.append("spec allows custom values ('predefined or custom'); the listed items are not enforced: %s" % ", ".join(vals))
    return p, note


def parse_acemate(path):
    lines = path.read_text().split("\n")
    sections, cur = {}, None
    for ln in lines:
        h = ACE_HEADER_RE.match(ln)
        if h:
            if h.group(1) in sections:
                die("acemate: duplicate event %s" % h.group(1))
            cur = sections[h.group(1)] = {"description": "", "rows": []}
        elif cur is None:
            continue
        elif ln.startswith("Triggered") or ln.startswith("Properties that"):
            cur["description"] = ln.strip()
        elif ln.startswith("| "):
            m = ACE_ROW_RE.match(ln)
            if not m:
                die("acemate: bad row %r" % ln)
            cur["rows"].append((m.group(1), bool(m.group(2)), m.group(3)))
        elif ACE_ORPHAN_RE.match(ln):
            cur["rows"].append((None, False, ACE_ORPHAN_RE.match(ln).group(1)))
        elif ln.strip() and not ln.startswith("Request Body schema"):
            die("acemate: unexpected line %r" % ln)
    out = {}
    for ev, sec in sections.items():
        props, rows = {}, sec["rows"]
        for i, (name, req, rest) in enumerate(rows):
            p, note = parse_ace_type(rest, "%s row %d" % (ev, i))
            if name is None:
                # Name cell lost. Every occurrence sits right before "<x>LimitsPeriodEnd", and
                # checkout_started lists "<x>LimitsRemaining" immediately before each such row.
                nxt = rows[i + 1][0] if i + 1 < len(rows) else None
                if not nxt or not nxt.endswith("PeriodEnd"):
                    die("acemate %s: cannot infer name of orphan row %d" % (ev, i))
                name = nxt[: -len("PeriodEnd")] + "Remaining"
                note.insert(0, "property name missing in spec (row reads '%s | |'); name inferred from the "
                               "following %s row and the matching %s property of checkout_started; "
                               "required unknown -> false" % (rest, nxt, name))
            if name in props:
                die("acemate %s: duplicate property %s" % (ev, name))
            p["required"] = req
            if note:
                p["note"] = "; ".join(note)
            props[name] = p
        out[ev] = {"description": sec["description"], "properties": props, "extra_keys": "none"}
    return out


def build_acemate(specs):
    sections = parse_acemate(specs / ACEMATE_FILES[0])
    identify = sections.pop("Identify", None)
    if identify is None:
        die("acemate: no Identify section")
    if len(sections) != EXPECTED_ACEMATE_EVENTS:
        die("acemate: expected %d events, got %d" % (EXPECTED_ACEMATE_EVENTS, len(sections)))
    # cross-check the inferred names against checkout_started
    for ev, e in sections.items():
        for n, p in e["properties"].items():
            if "inferred" in p.get("note", "") and n not in sections["checkout_started"]["properties"]:
                die("acemate %s: inferred name %s not found in checkout_started" % (ev, n))
    return {"catalog": "acemate", "spec_files": list(ACEMATE_FILES), "common": {},
            "identify": identify["properties"], "events": sections}


# ----------------------------------------------------------------------- validator
# Small reference validator, used only to self-check the generated fixtures.

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
UUID_V18_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _datetime_ok(s):
    if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", s):
        return False
    try:
        dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def check_value(v, p, komo):
    """Return None if valid, else a reason string."""
    if v is None:
        return None if p["nullable"] else "null not allowed"
    t = p["type"]
    if t in ("number", "integer"):
        if isinstance(v, bool):
            return "bool for number"
        if komo and isinstance(v, str):
            try:
                v = float(v.strip())
            except ValueError:
                return "not numeric"
        if not isinstance(v, (int, float)):
            return "not a number"
    elif t == "boolean":
        if komo and isinstance(v, str) and v.lower() in ("true", "false"):
            v = v.lower() == "true"
        if not isinstance(v, bool):
            return "not a boolean"
    elif t == "array":
        if not isinstance(v, list):
            return "not an array"
        for x in v:
            r = check_value(x, dict(p["items"], nullable=False), komo)
            if r:
                return "item: " + r
    elif t == "object":
        if not isinstance(v, dict):
            return "not an object"
    elif t == "string":
        if not isinstance(v, str):
            return "not a string"
        f = p.get("format")
        if f == "uuid" and not UUID_V18_RE.match(v):
            return "bad uuid"
        if f == "guid" and not UUID_RE.match(v):
            return "bad uuid"
        if f == "email" and not EMAIL_RE.match(v):
            return "bad email"
        if f == "date-time" and not _datetime_ok(v):
            return "bad date-time"
    if "enum" in p and v not in p["enum"]:
        return "not in enum"
    return None


def validate(source, payload, cats):
    """Return list of (path, reason)."""
    probs = []
    if source == "komo":
        cat = cats["komo"]
        ev = cat["events"].get(payload.get("event"))
        if ev is None:
            return [("event", "unknown event")]
        schema = [("", cat["common"]), ("", ev["properties"])]
        body = payload
    else:
        cat = cats["acemate"]
        body = payload.get("properties", {})
        if payload.get("event") == "$identify":
            schema = [("properties.", cat["identify"])]
        else:
            ev = cat["events"].get(payload.get("event"))
            if ev is None:
                return [("event", "unknown event")]
            # event props take precedence over identify props of the same name
            ident = {k: v for k, v in cat["identify"].items() if k not in ev["properties"]}
            schema = [("properties.", ev["properties"]), ("properties.", ident)]
        for k in ("distinct_id", "uuid", "timestamp"):
            if k not in payload:
                probs.append((k, "missing"))
        if "uuid" in payload and not UUID_RE.match(str(payload["uuid"])):
            probs.append(("uuid", "bad uuid"))
        if "timestamp" in payload and not _datetime_ok(str(payload["timestamp"])):
            probs.append(("timestamp", "bad date-time"))
    for prefix, props in schema:
        for name, p in props.items():
            if name not in body:
                if p["required"]:
                    probs.append((prefix + name, "missing required"))
                continue
            r = check_value(body[name], p, source == "komo")
            if r:
                probs.append((prefix + name, r))
    return probs


# ------------------------------------------------------------------------ fixtures

NS = uuid.UUID("6f1c1f3e-9a57-4c57-8d2e-5b0c2d9a7e11")
BASE_TS = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def duuid(*parts):
    return str(uuid.uuid5(NS, "/".join(str(p) for p in parts)))  # version 5: matches [1-8]


def ts(i, komo=False):
    t = BASE_TS + dt.timedelta(minutes=i)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


STRING_SAMPLES = {
    "content": "Can you explain the Krebs cycle?", "messageRole": "user", "date": "2024-05-02",
    "currency": "EUR", "timezone": "Europe/Berlin", "publicCourseId": "pub-course-42", "publicId": "pub-course-42",
    "degree": "BSc Biology", "lectureId": "lecture-7", "id": "chapter-3", "chapterId": "chapter-3",
    "title": "Cell metabolism", "description": "Glycolysis and the citric acid cycle", "position": "Lecturer",
    "universityName": "TU Munich", "referral": "FRIEND2024", "referralSource": "instagram",
    "adCampaignName": "spring_students", "adAudienceName": "de_students", "adName": "video_a",
    "userPrompt": "Focus on definitions", "periodEnd": "2024-06-01T00:00:00.000Z", "language": "english",
    "card_name": "Footy tipping quiz", "card_type": "Quiz", "social_platform": "facebook",
    "link_to": "https://www.komo.tech/", "webhook_trigger": "SignUpSuccess", "site_name": "My site",
}
NUMBER_SAMPLES = {"percentage": 75, "successRate": 0.8, "score": 8, "rating": 3, "charLength": 42}


def sample_value(name, p, i, komo=False, allow_null=False):
    if allow_null and p["nullable"]:
        return None
    if "default" in p:
        v = p["default"]
    elif "enum" in p:
        v = p["enum"][i % len(p["enum"])]
    elif p["type"] == "array":
        it = p["items"]
        return it["enum"][:2] if "enum" in it else ["exam prep", "curiosity"]
    elif p.get("format") in ("uuid", "guid"):
        v = duuid(name, i)
    elif p.get("format") == "email":
        v = "student%d@uni-example.de" % i
    elif p.get("format") == "date-time":
        v = ts(i)
    elif p["type"] == "string":
        v = STRING_SAMPLES.get(name, "sample %s" % name)
    elif p["type"] in ("number", "integer"):
        # *PeriodEnd: end of a quota period, most plausibly epoch seconds
        v = 1717200000 if name.endswith("PeriodEnd") else NUMBER_SAMPLES.get(name, 3)
    elif p["type"] == "boolean":
        v = i % 2 == 0
    else:
        v = {}
    if komo and not isinstance(v, str):  # Komo sends everything as strings
        v = str(v).lower() if isinstance(v, bool) else str(v)
    return v


def identify_props(ident, i, full):
    out = {}
    for n in sorted(ident):
        p = ident[n]
        if p["required"] or full or n in ("tenant", "subscriptionStatus", "usageReasons"):
            out[n] = sample_value(n, p, 0)
    out["email"] = "student%d@uni-example.de" % (i % 3)
    return out


def build_fixtures(komo, ace):
    valid = []
    common = komo["common"]
    for i, name in enumerate(sorted(komo["events"])):
        ev = komo["events"][name]
        pl = {}
        for n, p in common.items():
            pl[n] = sample_value(n, p, i, komo=True)
        pl["id"], pl["event"] = duuid("komo", name), name
        pl["timestamp"] = ts(i, komo=True)
        pl["site_id"] = duuid("komo-site")
        pl["user_session_id"] = duuid("komo-session", i % 3)
        pl["user_profile_id"] = duuid("komo-profile", i % 3)
        for n, p in ev["properties"].items():
            pl[n] = sample_value(n, p, 0, komo=True)
        pl["favourite_team"], pl["postcode"] = "Lions", "2000"
        if "data_capture" in ev["extra_keys"]:
            pl.update({"email": "joe@bloggs.com", "first_name": "Joe", "last_name": "Bloggs", "optin": "true"})
        valid.append(pl)
    ident = ace["identify"]
    for i, name in enumerate(sorted(ace["events"]) + ["$identify"]):
        props = identify_props(ident, i, name == "$identify")
        if name != "$identify":
            for n, p in ace["events"][name]["properties"].items():
                # props that also exist in Identify get a value valid under both schemas
                q = ident[n] if n in ident else p
                props[n] = sample_value(n, q, i, allow_null=(i % 2 == 1))
        else:
            props["$set"] = dict(props)
        props["$session_id"] = duuid("ace-session", i % 5)
        valid.append({"event": name, "distinct_id": duuid("ace-user", i % 3), "uuid": duuid("ace-event", name),
                      "timestamp": ts(i), "properties": props})
    return valid


def payload_source(pl):
    """Valid fixtures are raw payloads: PostHog capture shape (distinct_id + properties) => acemate."""
    return "acemate" if "distinct_id" in pl and isinstance(pl.get("properties"), dict) else "komo"


def komo_base(valid, name):
    return copy.deepcopy(next(v for v in valid if payload_source(v) == "komo" and v["event"] == name))


def ace_base(valid, name):
    return copy.deepcopy(next(v for v in valid if payload_source(v) == "acemate" and v["event"] == name))


def build_invalid(valid):
    cases = []

    def add(rule, source, prop, payload, note=None):
        c = {"rule": rule, "source": source, "expect_problem_property": prop,
             "expect_valid": rule == "coercible_ok", "payload": payload}
        if note:
            c["note"] = note
        cases.append(c)

    def k(name, **kw):
        pl = komo_base(valid, name)
        for key, val in kw.items():
            if val is DEL:
                del pl[key]
            else:
                pl[key] = val
        return pl

    def a(name, **kw):
        pl = ace_base(valid, name)
        for key, val in kw.items():
            if val is DEL:
                del pl["properties"][key]
            else:
                pl["properties"][key] = val
        return pl

    add("missing_required", "komo", "card_id", k("CardViewed", card_id=DEL))
    add("missing_required", "komo", "site_id", k("SiteViewed", site_id=DEL))
    add("missing_required", "acemate", "properties.courseId", a("chat_message_sent", courseId=DEL))
    add("missing_required", "acemate", "properties.email", a("exam_completed", email=DEL),
        "Identify property missing")
    add("missing_required", "acemate", "properties.organizationId", a("node_clicked", organizationId=DEL),
        "required+nullable: key must be present even though null is allowed")
    add("wrong_type", "komo", "score", k("CardViewed", score="abc"))
    add("wrong_type", "komo", "correct", k("CardShared", correct="one"))
    add("wrong_type", "acemate", "properties.charLength", a("chat_message_sent", charLength="42"),
        "acemate numbers are real JSON numbers; a string is not coerced")
    add("wrong_type", "acemate", "properties.withClips", a("exam_pdf_exported", withClips="true"))
    add("wrong_type", "acemate", "properties.usageReasons", a("educator_onboarding_completed", usageReasons="pass_exams"))
    add("enum", "komo", "action", k("CardAction", action="Teleport"))
    add("enum", "acemate", "properties.courseType", a("exam_generated", courseType="public"))
    add("enum", "acemate", "properties.learningGoals", a("flashcard_deleted", learningGoals=["pass_exams", "procrastinate"]),
        "array item outside Items Enum (Identify)")
    add("enum", "acemate", "properties.type", a("template_created", type="notes"), "single 'Value:' constant")
    add("bad_uuid", "komo", "site_id", k("SiteViewed", site_id="not-a-guid"))
    add("bad_uuid", "acemate", "properties.courseId", a("lecture_deleted", courseId="1234"))
    add("bad_uuid", "acemate", "properties.organizationId",
        a("note_created", organizationId="0fdbb943-511c-9220-9266-31465374f43b"),
        "well-formed hex but version nibble 9 violates the spec pattern [1-8]")
    add("bad_email", "acemate", "properties.email", a("timer_started", email="not-an-email"))
    add("bad_date_time", "komo", "timestamp", k("CardShared", timestamp="yesterday"))
    add("bad_date_time", "acemate", "properties.publishedAt", a("chapter_created", publishedAt="2024-13-45T99:00:00Z"))
    add("null_not_nullable", "komo", "card_id", k("CardCoverClicked", card_id=None))
    add("null_not_nullable", "acemate", "properties.courseId", a("note_deleted", courseId=None))
    add("null_not_nullable", "acemate", "properties.userType", a("link_created", userType=None))
    add("coercible_ok", "komo", "optin", k("SignUpSuccess", optin="false"),
        "data-capture field: arbitrary extra key, any string accepted")
    add("coercible_ok", "komo", "score", k("CardViewed", score="42", correct="0"), "numeric strings")
    add("coercible_ok", "komo", "score", k("CardAction", score="3.5"), "decimal numeric string")
    add("coercible_ok", "komo", "score", k("CardShared", score=7, correct=2), "real JSON numbers also fine")
    add("coercible_ok", "komo", "timestamp", k("InstantWinStarted", timestamp="2000-01-01T00:00:00.000Z"),
        "spec example timestamp")
    add("coercible_ok", "komo", "user_profile_id", k("WebhookError", user_profile_id=DEL), "optional common field absent")
    return cases


DEL = object()


def self_check(valid, invalid, cats):
    for v in valid:
        probs = validate(payload_source(v), v, cats)
        if probs:
            die("fixture self-check: valid %s/%s has problems %s" % (payload_source(v), v.get("event"), probs))
    for c in invalid:
        probs = validate(c["source"], c["payload"], cats)
        if c["expect_valid"]:
            if probs:
                die("fixture self-check: coercible_ok case fails: %s" % probs)
        elif [p for p, _ in probs] != [c["expect_problem_property"]]:
            die("fixture self-check: %s case reports %s, expected %s" % (c["rule"], probs, c["expect_problem_property"]))


# ------------------------------------------------------------------------ main

def dump_json(obj):
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def dump_jsonl(rows):
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("specs_dir", nargs="?", default=str(DEFAULT_SPECS))
    ap.add_argument("--check", action="store_true", help="exit 1 if committed files differ")
    ap.add_argument("--fixtures", action="store_true", help="also generate tests/fixtures/*.jsonl")
    args = ap.parse_args(argv)
    specs = Path(args.specs_dir)
    if not specs.is_dir():
        print("specs directory not found: %s (pass SPECS_DIR, set EVENT_RELAY_SPECS_DIR, or put "
              "the spec texts at ../shared/specs next to the repository)" % specs, file=sys.stderr)
        return 2
    try:
        komo, ace = build_komo(specs), build_acemate(specs)
        outputs = {REPO_ROOT / "catalog" / "komo.json": dump_json(komo),
                   REPO_ROOT / "catalog" / "acemate.json": dump_json(ace)}
        if args.fixtures:
            cats = {"komo": komo, "acemate": ace}
            valid = build_fixtures(komo, ace)
            invalid = build_invalid(valid)
            self_check(valid, invalid, cats)
            fx = REPO_ROOT / "tests" / "fixtures"
            outputs[fx / "valid_events.jsonl"] = dump_jsonl(valid)
            outputs[fx / "invalid_events.jsonl"] = dump_jsonl(invalid)
    except SpecError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    stale = []
    for path, text in outputs.items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
    if stale:
        for p in stale:
            print("out of date: %s" % p.relative_to(REPO_ROOT), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
