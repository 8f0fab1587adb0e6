#![recursion_limit = "256"]
//! storefold-journeys: realistic provider journeys with books computed by hand,
//! and an independent model of `docs/books.md` for property tests.
//!
//! * [`library`] loads the journeys under `crates/journeys/data/`: each is the
//!   tenant's settings ([`MapOptions`]), the webhooks in the order they happened
//!   ([`Step`]: provider, topic, headers, the exact body bytes, the provider's
//!   event id, when it was received) and what the books must say afterwards
//!   ([`Expect`]), worked out by hand from the providers' documented behaviour and
//!   the rules of `docs/books.md` (see the crate's README for the table).
//! * [`run`] maps steps through the real mappers and folds them with the real
//!   engine in any arrival order, batch split and with redeliveries, and reads back
//!   what the books say ([`run::Books`]).
//! * [`model`] is a small ledger model written from `docs/books.md` alone, over an
//!   abstract journey description; [`generator`] (`src/gen.rs`) generates such descriptions and renders
//!   them as the webhooks providers send.
//!
//! Other test suites (the processor's, PostgreSQL's) reuse [`library`]: they sign
//! [`Step::body`] with `ProviderKind::sign` and post it through the real ingest.
//!
//! ```
//! let journeys = storefold_journeys::library();
//! assert!(journeys.iter().any(|j| j.name == "shopify_partial_refund"));
//! let j = &journeys[0];
//! let envelopes = j.steps[0].map(&j.tenant, &j.options).expect("maps");
//! assert!(!envelopes.is_empty());
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use storefold_core::ledger::EntryKind;
use storefold_core::{Currency, Envelope, Money, MoneyBag};
use storefold_providers::{
    AdyenCapture, Headers, MapContext, MapError, MapOptions, OrderReference, ProviderKind,
    RawInput, ReferencePattern,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[path = "gen.rs"]
pub mod generator;
pub mod model;
pub mod run;

/// One journey: a tenant, the webhooks it received and what its books must say.
#[derive(Clone, Debug)]
pub struct Journey {
    /// The directory name (`shopify_partial_refund`).
    pub name: String,
    /// One line saying what happens.
    pub title: String,
    /// The tenant id every step is mapped for.
    pub tenant: String,
    /// The tenant's stores and payment order references.
    pub options: MapOptions,
    /// The webhooks, in the order they happened.
    pub steps: Vec<Step>,
    /// The books, computed by hand.
    pub expect: Expect,
}

/// One webhook as the provider sent it (signature headers aside: sign
/// [`Step::body`] with `ProviderKind::sign` to get them).
#[derive(Clone, Debug)]
pub struct Step {
    pub provider: ProviderKind,
    /// The topic the ingest's `describe` finds (`orders/create`, `charge.refunded`).
    pub topic: String,
    /// The idempotency id the ingest's `describe` finds.
    pub event_id: String,
    /// The headers the provider sends besides its signature, as (name, value).
    pub headers: Vec<(String, String)>,
    /// The exact body bytes.
    pub body: Vec<u8>,
    /// The body's file, relative to the journey's directory.
    pub body_file: String,
    /// When the ingest received it.
    pub received_at: OffsetDateTime,
    /// What happens at this step, in words.
    pub note: String,
}

impl Step {
    /// The headers as the mappers read them.
    pub fn headers(&self) -> Headers {
        Headers::from_pairs(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Maps the step through its provider's real mapper for `tenant`.
    pub fn map(&self, tenant: &str, options: &MapOptions) -> Result<Vec<Envelope>, MapError> {
        map_raw(
            self.provider,
            &self.topic,
            &self.event_id,
            &self.headers,
            &self.body,
            self.received_at,
            tenant,
            options,
        )
    }
}

/// Maps one webhook (as the ingest stored it) through its provider's real
/// mapper for `tenant`, as the processor does.
#[allow(clippy::too_many_arguments)]
pub fn map_raw(
    provider: ProviderKind,
    topic: &str,
    event_id: &str,
    headers: &[(String, String)],
    body: &[u8],
    received_at: OffsetDateTime,
    tenant: &str,
    options: &MapOptions,
) -> Result<Vec<Envelope>, MapError> {
    let headers = Headers::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let ctx = MapContext { tenant, options };
    let input = RawInput {
        topic,
        event_id,
        headers: &headers,
        body,
        received_at,
    };
    provider.map(&ctx, &input)
}

/// What a journey's books must say after every step was folded.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// By order id (`shopify:5801001001`).
    pub orders: BTreeMap<String, OrderExpect>,
    /// By the customer's email.
    pub customers: BTreeMap<String, CustomerExpect>,
    /// `(kind, order id)` pairs the newest triggers (one per trigger id) must
    /// include; kinds not named here or in [`Expect::triggers_absent`] are not
    /// checked (all arrival orders must still give the same triggers).
    pub triggers: Vec<(String, String)>,
    /// `(kind, order id)` pairs no trigger may have.
    pub triggers_absent: Vec<(String, String)>,
}

/// One order's books.
#[derive(Clone, Debug)]
pub struct OrderExpect {
    /// The email of the customer the order belongs to.
    pub customer: Option<String>,
    /// How the figures were worked out, in words.
    pub why: String,
    pub figures: FiguresExpect,
    /// Counted entries: exactly these `(kind, amount)`, as a multiset.
    pub counted: Vec<(EntryKind, Money)>,
    /// Entries that must be listed without counting (more may be listed).
    pub listed: Vec<(EntryKind, Money)>,
    /// `(tracking number, status)` of every shipment, when given.
    pub shipments: Option<Vec<(String, String)>>,
    /// Number of returns on the order, when given.
    pub returns: Option<usize>,
}

/// Figures of [`storefold_core::ledger::OrderFigures`]; bags hold no zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FiguresExpect {
    pub paid: MoneyBag,
    pub paid_source: String,
    pub authorized: MoneyBag,
    pub refunded: MoneyBag,
    pub chargeback_lost: MoneyBag,
    pub disputed: MoneyBag,
    pub net: MoneyBag,
    pub fees: MoneyBag,
    /// Checked only when given.
    pub fees_known: Option<bool>,
    /// Checked only when given: `Some(None)` is "unknown".
    pub net_after_fees: Option<Option<MoneyBag>>,
    /// Cost of goods sold; checked only when given.
    pub cogs: Option<MoneyBag>,
    /// Checked only when given: `Some(None)` is "unknown".
    pub gross_margin: Option<Option<MoneyBag>>,
}

/// One customer's Customer 360 figures.
#[derive(Clone, Debug, Default)]
pub struct CustomerExpect {
    /// Every order the customer holds.
    pub orders: Vec<String>,
    /// By currency code.
    pub revenue: BTreeMap<String, RevenueExpect>,
    pub tickets: Option<usize>,
    pub open_tickets: Option<u64>,
    pub returns: Option<u64>,
}

/// A [`storefold_core::aggregate::CurrencyRevenue`] in minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevenueExpect {
    pub gross: i64,
    pub refunded: i64,
    pub chargeback_lost: i64,
    pub net: i64,
    pub orders: u64,
    pub aov: i64,
    /// `(cogs, gross margin)`, checked only when given (`None` margin: unknown).
    pub margin: Option<(i64, Option<i64>)>,
}

/// The directory the library is read from.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Every journey of the library, by name. Panics with the file and the reason
/// when the library is malformed (it is test data kept in this repository).
pub fn library() -> Vec<Journey> {
    let dir = data_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().join("manifest.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| load(&dir.join(n)).unwrap_or_else(|e| panic!("journey {n}: {e}")))
        .collect()
}

/// The journey of the library called `name`.
pub fn journey(name: &str) -> Journey {
    load(&data_dir().join(name)).unwrap_or_else(|e| panic!("journey {name}: {e}"))
}

/// Loads one journey directory (`manifest.json`, `expect.json`, bodies).
pub fn load(dir: &Path) -> Result<Journey, String> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let read = |f: &str| -> Result<Vec<u8>, String> {
        std::fs::read(dir.join(f)).map_err(|e| format!("{f}: {e}"))
    };
    let manifest: Manifest = serde_json::from_slice(&read("manifest.json")?)
        .map_err(|e| format!("manifest.json: {e}"))?;
    let expect: Value =
        serde_json::from_slice(&read("expect.json")?).map_err(|e| format!("expect.json: {e}"))?;
    let options = manifest.tenant.options()?;
    let mut steps = Vec::new();
    for (i, s) in manifest.steps.iter().enumerate() {
        let provider: ProviderKind = s
            .provider
            .parse()
            .map_err(|e| format!("step {}: {e}", i + 1))?;
        steps.push(Step {
            provider,
            topic: s.topic.clone(),
            event_id: s.event_id.clone(),
            headers: s
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            body: read(&s.body)?,
            body_file: s.body.clone(),
            received_at: OffsetDateTime::parse(&s.received_at, &Rfc3339)
                .map_err(|e| format!("step {} received_at: {e}", i + 1))?,
            note: s.note.clone(),
        });
    }
    Ok(Journey {
        name,
        title: manifest.title,
        tenant: manifest.tenant.id,
        options,
        steps,
        expect: parse_expect(&expect).map_err(|e| format!("expect.json: {e}"))?,
    })
}

#[derive(Deserialize)]
struct Manifest {
    title: String,
    tenant: TenantSpec,
    steps: Vec<StepSpec>,
}

#[derive(Deserialize)]
struct TenantSpec {
    id: String,
    #[serde(default)]
    stores: Vec<String>,
    #[serde(default)]
    stripe: Option<ReferenceSpec>,
    #[serde(default)]
    paypal: Option<ReferenceSpec>,
    #[serde(default)]
    adyen: Option<ReferenceSpec>,
    #[serde(default)]
    adyen_capture: Option<String>,
    #[serde(default)]
    cost_currency: Option<String>,
}

#[derive(Deserialize)]
struct ReferenceSpec {
    #[serde(default)]
    fields: Option<Vec<String>>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
}

impl ReferenceSpec {
    fn apply(&self, base: &OrderReference) -> Result<OrderReference, String> {
        Ok(OrderReference {
            fields: self.fields.clone().unwrap_or_else(|| base.fields.clone()),
            store: self.store.clone().or_else(|| base.store.clone()),
            pattern: match &self.pattern {
                Some(p) => Some(ReferencePattern::new(p)?),
                None => base.pattern.clone(),
            },
        })
    }
}

impl TenantSpec {
    fn options(&self) -> Result<MapOptions, String> {
        let mut o = MapOptions::for_stores(self.stores.iter().cloned());
        if let Some(r) = &self.stripe {
            o.stripe = r.apply(&o.stripe)?;
        }
        if let Some(r) = &self.paypal {
            o.paypal = r.apply(&o.paypal)?;
        }
        if let Some(r) = &self.adyen {
            o.adyen = r.apply(&o.adyen)?;
        }
        o.adyen_capture = match self.adyen_capture.as_deref() {
            None | Some("automatic") => AdyenCapture::Automatic,
            Some("manual") => AdyenCapture::Manual,
            Some(other) => return Err(format!("adyen_capture {other:?}")),
        };
        o.cost_currency = match &self.cost_currency {
            Some(c) => Some(Currency::from_code(c).map_err(|e| format!("cost_currency: {e}"))?),
            None => None,
        };
        Ok(o)
    }
}

#[derive(Deserialize)]
struct StepSpec {
    provider: String,
    topic: String,
    event_id: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: String,
    received_at: String,
    #[serde(default)]
    note: String,
}

/// `"25.00 USD"`.
pub fn parse_money(s: &str) -> Result<Money, String> {
    let (amount, code) = s
        .trim()
        .rsplit_once(' ')
        .ok_or_else(|| format!("{s:?}: expected \"<amount> <currency>\""))?;
    Money::parse_code(amount, code).map_err(|e| format!("{s:?}: {e}"))
}

/// `{"USD": "25.00"}`, zeros left out.
fn parse_bag(v: &Value) -> Result<MoneyBag, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{v}: expected {{\"USD\": \"1.00\"}}"))?;
    let mut bag = MoneyBag::default();
    for (code, amount) in obj {
        let amount = amount
            .as_str()
            .ok_or_else(|| format!("{code}: amounts are decimal strings"))?;
        let m = Money::parse_code(amount, code).map_err(|e| format!("{code} {amount}: {e}"))?;
        if m.minor != 0 {
            bag.add(m);
        }
    }
    Ok(bag)
}

fn parse_kind(s: &str) -> Result<EntryKind, String> {
    serde_json::from_value(Value::String(s.to_string()))
        .map_err(|e| format!("entry kind {s:?}: {e}"))
}

fn parse_entries(v: Option<&Value>) -> Result<Vec<(EntryKind, Money)>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let items = v.as_array().ok_or("entries: expected a list")?;
    items
        .iter()
        .map(|e| match e.as_array().map(Vec::as_slice) {
            Some([Value::String(k), Value::String(a)]) => Ok((parse_kind(k)?, parse_money(a)?)),
            _ => Err(format!("entry {e}: expected [kind, \"1.00 USD\"]")),
        })
        .collect()
}

fn parse_pairs(v: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let items = v.as_array().ok_or("expected a list of pairs")?;
    items
        .iter()
        .map(|e| match e.as_array().map(Vec::as_slice) {
            Some([Value::String(a), Value::String(b)]) => Ok((a.clone(), b.clone())),
            _ => Err(format!("{e}: expected [\"a\", \"b\"]")),
        })
        .collect()
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    v.get(key).ok_or_else(|| format!("missing {key}"))
}

fn str_of(v: &Value, key: &str) -> Result<String, String> {
    field(v, key)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{key}: expected a string"))
}

fn minor_of(v: &Value, key: &str, currency: &str) -> Result<i64, String> {
    let s = field(v, key)?
        .as_str()
        .ok_or_else(|| format!("{key}: expected a decimal string"))?;
    Money::parse_code(s, currency)
        .map(|m| m.minor)
        .map_err(|e| format!("{key}: {e}"))
}

fn parse_expect(v: &Value) -> Result<Expect, String> {
    let mut expect = Expect::default();
    for (id, o) in field(v, "orders")?
        .as_object()
        .ok_or("orders: expected an object")?
    {
        let f = field(o, "figures").map_err(|e| format!("{id}: {e}"))?;
        let bag = |k: &str| -> Result<MoneyBag, String> {
            parse_bag(field(f, k)?).map_err(|e| format!("{id} {k}: {e}"))
        };
        let figures = FiguresExpect {
            paid: bag("paid")?,
            paid_source: str_of(f, "paid_source")?,
            authorized: bag("authorized")?,
            refunded: bag("refunded")?,
            chargeback_lost: bag("chargeback_lost")?,
            disputed: bag("disputed")?,
            net: bag("net")?,
            fees: bag("fees")?,
            fees_known: f.get("fees_known").and_then(Value::as_bool),
            net_after_fees: match f.get("net_after_fees") {
                None => None,
                Some(Value::Null) => Some(None),
                Some(b) => Some(Some(parse_bag(b).map_err(|e| format!("{id}: {e}"))?)),
            },
            cogs: match f.get("cogs") {
                None => None,
                Some(b) => Some(parse_bag(b).map_err(|e| format!("{id} cogs: {e}"))?),
            },
            gross_margin: match f.get("gross_margin") {
                None => None,
                Some(Value::Null) => Some(None),
                Some(b) => Some(Some(
                    parse_bag(b).map_err(|e| format!("{id} gross_margin: {e}"))?,
                )),
            },
        };
        let ledger = o.get("ledger").cloned().unwrap_or(Value::Null);
        let shipments = match o.get("shipments") {
            None => None,
            Some(list) => Some(
                list.as_array()
                    .ok_or("shipments: expected a list")?
                    .iter()
                    .map(|s| Ok((str_of(s, "tracking_number")?, str_of(s, "status")?)))
                    .collect::<Result<Vec<_>, String>>()?,
            ),
        };
        expect.orders.insert(
            id.clone(),
            OrderExpect {
                customer: o
                    .get("customer")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                why: o
                    .get("why")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                figures,
                counted: parse_entries(ledger.get("counted")).map_err(|e| format!("{id}: {e}"))?,
                listed: parse_entries(ledger.get("listed")).map_err(|e| format!("{id}: {e}"))?,
                shipments,
                returns: o.get("returns").and_then(Value::as_u64).map(|n| n as usize),
            },
        );
    }
    if let Some(customers) = v.get("customers").and_then(Value::as_object) {
        for (email, c) in customers {
            let mut revenue = BTreeMap::new();
            if let Some(r) = c.get("revenue").and_then(Value::as_object) {
                for (code, r) in r {
                    let e = |k: &str| minor_of(r, k, code).map_err(|e| format!("{email}: {e}"));
                    revenue.insert(
                        code.clone(),
                        RevenueExpect {
                            gross: e("gross")?,
                            refunded: e("refunded")?,
                            chargeback_lost: e("chargeback_lost")?,
                            net: e("net")?,
                            orders: field(r, "orders")?.as_u64().ok_or("orders: a count")?,
                            aov: e("aov")?,
                            margin: match r.get("cogs") {
                                None => None,
                                Some(_) => Some((
                                    e("cogs")?,
                                    match r.get("gross_margin") {
                                        Some(Value::Null) | None => None,
                                        Some(_) => Some(e("gross_margin")?),
                                    },
                                )),
                            },
                        },
                    );
                }
            }
            expect.customers.insert(
                email.clone(),
                CustomerExpect {
                    orders: c
                        .get("orders")
                        .and_then(Value::as_array)
                        .map(|l| {
                            l.iter()
                                .filter_map(|o| o.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    revenue,
                    tickets: c.get("tickets").and_then(Value::as_u64).map(|n| n as usize),
                    open_tickets: c.get("open_tickets").and_then(Value::as_u64),
                    returns: c.get("returns").and_then(Value::as_u64),
                },
            );
        }
    }
    expect.triggers = parse_pairs(v.get("triggers"))?;
    expect.triggers_absent = parse_pairs(v.get("triggers_absent"))?;
    Ok(expect)
}

/// The deterministic random source (SplitMix64) of arrival orders, batch
/// splits and generated journeys: a failing case is replayed from its seed.
pub use storefold_scenario::Rng;
