//! The generator's state: the shops and their customers, the drafts (raw events
//! before delivery), ids and clocks from the seed, one story at a time, and the
//! delivery (headers as the provider sends them, arrival order, redeliveries).

use serde_json::Value;
use storefold_codec::{RawEvent, Verification};
use storefold_core::identity::normalize_phone;
use storefold_providers::{Headers, ProviderKind, WebhookRequest};
use storefold_scenario::{FIRST_NAMES, LAST_NAMES, Rng};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub(super) const SHOPIFY_SECRET: &str = "history-shopify-secret";
pub(super) const STRIPE_SECRET: &str = "whsec_history";
/// 2025-03-03T00:00:00Z.
pub(super) const EPOCH: i64 = 1_740_960_000;
pub(super) const DAY: i64 = 86_400;

pub(super) const PAGES: [&str; 4] = ["/", "/products/tee", "/collections/new", "/products/hoodie"];

/// A tenant's shop.
pub(super) struct Shop {
    pub(super) name: String,
    pub(super) currency: &'static str,
    pub(super) country: &'static str,
    pub(super) customers: Vec<Cust>,
    pub(super) next_number: u64,
}

pub(super) struct Cust {
    pub(super) email: String,
    /// E.164.
    pub(super) phone: Option<String>,
    pub(super) first: &'static str,
    pub(super) last: &'static str,
    pub(super) shopify_id: u64,
    pub(super) helpdesk_id: u64,
    pub(super) visitor: String,
    pub(super) signed_up: bool,
    pub(super) orders: Vec<OrderRef>,
}

/// A Stripe charge paying a Shopify order.
pub(super) struct Charge {
    pub(super) id: String,
    pub(super) payment_intent: String,
    pub(super) order_id: u64,
    pub(super) total: i64,
    pub(super) currency: String,
}

#[derive(Clone)]
pub(super) struct OrderRef {
    pub(super) number: u64,
    pub(super) at: i64,
}

/// One raw event before it is delivered.
pub(super) struct Draft {
    pub(super) tenant: usize,
    pub(super) provider: ProviderKind,
    pub(super) topic: &'static str,
    pub(super) body: Vec<u8>,
    /// Event time, unix seconds.
    pub(super) at: i64,
    /// When it reaches the ingest, unix milliseconds (before the window shuffle).
    pub(super) arrive: i64,
    /// Shopify's `X-Shopify-Event-Id`.
    pub(super) shopify_event: Option<String>,
}

pub(super) struct Gen {
    pub(super) rng: Rng,
    pub(super) salt: u64,
    pub(super) counter: u64,
    pub(super) shops: Vec<Shop>,
    pub(super) drafts: Vec<Draft>,
}

/// SplitMix64's finaliser: a bijection, so distinct counters give distinct ids.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(super) fn base36(mut n: u64, len: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = vec![b'0'; len];
    for c in s.iter_mut().rev() {
        *c = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(s).unwrap_or_default()
}

pub(super) fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Minor units as the decimal string Shopify sends.
pub(super) fn decimal(minor: i64, currency: &str) -> String {
    if currency == "JPY" {
        minor.to_string()
    } else {
        format!("{}.{:02}", minor / 100, minor % 100)
    }
}

impl Gen {
    pub(super) fn new(seed: u64, tenants: usize, customers: usize) -> Self {
        let mut rng = Rng::new(seed);
        let salt = rng.next_u64();
        let mut g = Gen {
            rng,
            salt,
            counter: 0,
            shops: Vec::new(),
            drafts: Vec::new(),
        };
        for t in 0..tenants {
            let (currency, country) = match t % 3 {
                0 => ("USD", "US"),
                1 => ("EUR", "DE"),
                _ => ("JPY", "JP"),
            };
            let name = format!("t{t:03}");
            let mut custs: Vec<Cust> = Vec::with_capacity(customers);
            for c in 0..customers {
                let phone = if c > 0 && g.rng.chance(4) {
                    // A household: two customers, one phone (ambiguous, merges nothing).
                    custs[c - 1].phone.clone().or_else(|| g.phone(country))
                } else if g.rng.chance(55) {
                    g.phone(country)
                } else {
                    None
                };
                let visitor = format!("v{}", base36(g.uid(), 10));
                custs.push(Cust {
                    email: format!("c{c}.{}@{name}.example", base36(g.uid() % 1296, 2)),
                    phone,
                    first: FIRST_NAMES[g.rng.below(FIRST_NAMES.len() as u64) as usize],
                    last: LAST_NAMES[g.rng.below(LAST_NAMES.len() as u64) as usize],
                    shopify_id: 7_000_000_000 + t as u64 * 1_000_000 + c as u64,
                    helpdesk_id: 380_000_000 + t as u64 * 1_000_000 + c as u64,
                    visitor,
                    signed_up: false,
                    orders: Vec::new(),
                });
            }
            g.shops.push(Shop {
                name,
                currency,
                country,
                customers: custs,
                next_number: 1001,
            });
        }
        g
    }

    pub(super) fn uid(&mut self) -> u64 {
        self.counter += 1;
        mix(self.salt ^ self.counter)
    }

    pub(super) fn uuid(&mut self) -> String {
        let a = self.uid();
        let b = self.uid();
        let h = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    pub(super) fn stripe_id(&mut self, prefix: &str) -> String {
        let a = self.uid();
        format!("{prefix}_3Q{}", base36(a, 12))
    }

    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len() as u64) as usize]
    }

    /// A valid phone number of `country`, in E.164.
    pub(super) fn phone(&mut self, country: &str) -> Option<String> {
        for _ in 0..32 {
            let candidate = match country {
                "US" => format!(
                    "+1{}{}{:04}",
                    self.pick(&[212, 415, 617, 312, 503]),
                    220 + self.rng.below(770),
                    self.rng.below(10_000)
                ),
                "DE" => format!(
                    "+49{}{:07}",
                    self.pick(&[30, 40, 89, 221]),
                    1_000_000 + self.rng.below(8_999_999)
                ),
                _ => format!(
                    "+81{}{:04}{:04}",
                    self.pick(&[3, 6]),
                    1000 + self.rng.below(8999),
                    self.rng.below(10_000)
                ),
            };
            if let Some(p) = normalize_phone(&candidate, None) {
                return Some(p);
            }
        }
        None
    }

    /// Queues a draft; `delay_ms` is how long after its event time it arrives.
    pub(super) fn push(
        &mut self,
        tenant: usize,
        provider: ProviderKind,
        topic: &'static str,
        body: Value,
        at: i64,
        delay_ms: i64,
    ) -> usize {
        let shopify_event = (provider == ProviderKind::Shopify).then(|| self.uuid());
        self.drafts.push(Draft {
            tenant,
            provider,
            topic,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            at,
            arrive: at * 1000 + delay_ms,
            shopify_event,
        });
        self.drafts.len() - 1
    }

    /// A usual delivery delay: a second or two, sometimes minutes.
    pub(super) fn delay(&mut self) -> i64 {
        if self.rng.chance(8) {
            10_000 + self.rng.below(600_000) as i64
        } else {
            150 + self.rng.below(3_000) as i64
        }
    }

    /// One story: a customer signing up, an order and what follows it, a visit,
    /// a ticket, or a guest order by phone.
    pub(super) fn story(&mut self) {
        let t = self.rng.below(self.shops.len() as u64) as usize;
        let c = self.rng.below(self.shops[t].customers.len() as u64) as usize;
        let start = EPOCH + self.rng.below(28 * DAY as u64) as i64;
        if !self.shops[t].customers[c].signed_up && self.rng.chance(25) {
            let at = start - DAY - self.rng.below(DAY as u64) as i64;
            self.signup(t, c, at);
        }
        match self.rng.below(100) {
            0..=57 => self.order_story(t, c, start),
            58..=74 => self.visit_story(t, c, start),
            75..=93 => self.ticket_story(t, c, start),
            _ => self.guest_phone_order(t, c, start),
        }
    }

    /// The raw event of a draft delivered at `received_ms`: the headers the
    /// provider sends (the ones the ingest keeps), the event id and topic as the
    /// ingest's `describe` gives them.
    pub(super) fn finish(&self, d: &Draft, received_ms: i64) -> RawEvent {
        let shop = &self.shops[d.tenant];
        let received =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(received_ms) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut pairs: Vec<(String, String)> = Vec::new();
        match d.provider {
            ProviderKind::Shopify => {
                let at =
                    OffsetDateTime::from_unix_timestamp(d.at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
                if let Ok(s) = d.provider.sign(SHOPIFY_SECRET, d.topic, &d.body, at) {
                    pairs.extend(s.headers);
                }
                pairs.push((
                    "X-Shopify-Shop-Domain".into(),
                    format!("{}.myshopify.com", shop.name),
                ));
                pairs.push(("X-Shopify-Api-Version".into(), "2025-01".into()));
                if let Some(e) = &d.shopify_event {
                    pairs.push(("X-Shopify-Event-Id".into(), e.clone()));
                }
            }
            ProviderKind::Stripe => {
                if let Ok(s) = d.provider.sign(STRIPE_SECRET, d.topic, &d.body, received) {
                    pairs.extend(s.headers);
                }
            }
            ProviderKind::Zendesk => {
                pairs.push((
                    "X-Zendesk-Webhook-Id".into(),
                    format!("01HZ{}WEBHOOK", shop.name.to_ascii_uppercase()),
                ));
            }
            ProviderKind::Collect => {
                pairs.push((
                    "Origin".into(),
                    format!("https://{}.shop.example", shop.name),
                ));
            }
            _ => {}
        }
        let all = Headers::from_pairs(pairs);
        let inbound = d
            .provider
            .describe(&WebhookRequest {
                headers: &all,
                body: &d.body,
                url_token: None,
            })
            .unwrap_or_else(|e| panic!("a generated {} body is not describable: {e}", d.provider));
        assert_eq!(inbound.topic, d.topic, "generated {} topic", d.provider);
        RawEvent {
            event_id: inbound.event_id,
            tenant: shop.name.clone(),
            provider: d.provider.name().to_string(),
            topic: inbound.topic,
            received_at: received_ms,
            headers: all
                .select(d.provider.kept_headers())
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                // The shops accept beacon emails (`collect_identify`), as the
                // ingest marks their beacons.
                .chain((d.provider == ProviderKind::Collect).then(|| {
                    (
                        storefold_providers::collect::IDENTITY_HEADER.to_string(),
                        storefold_providers::collect::IDENTITY_OPTED_IN.to_string(),
                    )
                }))
                .collect(),
            body: d.body.clone(),
            verification: d
                .provider
                .scheme()
                .map_or_else(Verification::unsigned, Verification::verified),
            trace_context: None,
            encryption: None,
            residue: None,
        }
    }
}

/// The delivery order: by arrival time, then shuffled within windows of 50, then
/// `dups` events delivered once more a little later. Indexes into `drafts`.
pub(super) fn arrival_order(rng: &mut Rng, drafts: &[Draft], dups: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..drafts.len()).collect();
    order.sort_by_key(|&i| (drafts[i].arrive, i));
    for window in order.chunks_mut(50) {
        // Most neighbours keep their order; a few swap places.
        for _ in 0..window.len() / 5 {
            let a = rng.below(window.len() as u64) as usize;
            let b = rng.below(window.len() as u64) as usize;
            window.swap(a, b);
        }
    }
    let mut picks: Vec<usize> = (0..order.len()).collect();
    rng.shuffle(&mut picks);
    picks.truncate(dups.min(order.len()));
    // Positions doubled: originals at even slots, redeliveries at odd slots after.
    let mut slots: Vec<(usize, usize)> =
        order.iter().enumerate().map(|(p, &i)| (2 * p, i)).collect();
    for p in picks {
        let later = p + 1 + rng.below(400) as usize;
        slots.push((2 * later.min(order.len()) + 1, order[p]));
    }
    slots.sort_by_key(|s| s.0);
    slots.into_iter().map(|(_, i)| i).collect()
}
