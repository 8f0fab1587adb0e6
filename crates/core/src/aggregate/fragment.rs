//! What one identity knows of a customer: profile, identity values, touches, tickets.

use super::*;

/// Profile facts from a store's customer record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub addresses: Vec<Address>,
    #[serde(default)]
    pub consent: Consent,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub created_at: Option<OffsetDateTime>,
}

/// A touch, as a customer keeps it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TouchEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub touch_id: String,
    #[serde(default)]
    pub utm: Utm,
    #[serde(default)]
    pub landing_page: Option<String>,
    #[serde(default)]
    pub referrer: Option<String>,
    #[serde(default)]
    pub gclid: Option<String>,
    #[serde(default)]
    pub fbclid: Option<String>,
}

impl TouchEntry {
    /// A touch without the pages it came from (a landing page may carry the
    /// email in its query), its click ids or its UTM term and content; its
    /// time and campaign stay.
    pub fn scrub(&mut self) {
        self.utm.scrub();
        self.landing_page = None;
        self.referrer = None;
        self.gclid = None;
        self.fbclid = None;
    }
}

/// An identity value seen for a customer (personal data; erased on redaction).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityValue {
    /// `email`, `phone`, `anonymous_id`, or the external id's source.
    pub kind: String,
    pub value: String,
}

/// What one identity (an email, a phone, an external id, an anonymous id) knows
/// of a customer. A customer is the join of the fragments that resolve to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    pub key: IdentityKey,
    #[serde(default)]
    pub profile: Option<Reg<Profile>>,
    #[serde(default)]
    pub identities: BTreeSet<IdentityValue>,
    /// The newest touches by touch id (at most `Limits::touches`, see
    /// [`Fragment::bound`]).
    #[serde(default)]
    pub touches: BTreeMap<String, TouchEntry>,
    /// The newest tickets (at most `Limits::tickets`).
    #[serde(default)]
    pub tickets: BTreeMap<String, Reg<Ticket>>,
    /// The earliest touch ever folded in, kept whatever `touches` drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_touch: Option<TouchEntry>,
    /// Every touch id folded in (fingerprints), so touches are counted
    /// exactly while only the newest are kept.
    #[serde(default, skip_serializing_if = "Seen::is_empty")]
    pub touch_ids: Seen,
    /// Touch events by UTM source, medium and campaign.
    #[serde(default, skip_serializing_if = "TouchCounts::is_empty")]
    pub touch_counts: TouchCounts,
    /// Personal data removed (asked for, or claimed by an email that asked).
    #[serde(default)]
    pub redacted: bool,
    /// A redaction named this identity itself: its claims are erased too.
    #[serde(default)]
    pub erasure_requested: bool,
    #[serde(default)]
    pub seen: Seen,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first_event_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_event_at: Option<OffsetDateTime>,
}

impl Fragment {
    pub fn new(key: IdentityKey) -> Self {
        Fragment {
            key,
            profile: None,
            identities: BTreeSet::new(),
            touches: BTreeMap::new(),
            tickets: BTreeMap::new(),
            first_touch: None,
            touch_ids: Seen::default(),
            touch_counts: TouchCounts::default(),
            redacted: false,
            erasure_requested: false,
            seen: Seen::default(),
            first_event_at: None,
            last_event_at: None,
        }
    }

    /// Remembers the identity values of an event (unless erased).
    pub fn add_identity(&mut self, id: &Identity) {
        if self.redacted {
            return;
        }
        if let Some(e) = &id.email {
            self.identities.insert(IdentityValue {
                kind: "email".into(),
                value: e.clone(),
            });
        }
        if let Some(p) = &id.phone {
            self.identities.insert(IdentityValue {
                kind: "phone".into(),
                value: p.clone(),
            });
        }
        for x in &id.external {
            self.identities.insert(IdentityValue {
                kind: x.source.clone(),
                value: x.id.clone(),
            });
        }
        if let Some(a) = &id.anonymous_id {
            self.identities.insert(IdentityValue {
                kind: "anonymous_id".into(),
                value: a.clone(),
            });
        }
    }

    /// Folds one event into the fragment; `false` for a duplicate.
    pub fn apply(&mut self, env: &Envelope) -> bool {
        if !self.seen.insert(&env.event_id) {
            return false;
        }
        self.first_event_at = Some(
            self.first_event_at
                .map_or(env.occurred_at, |t| t.min(env.occurred_at)),
        );
        self.last_event_at = self.last_event_at.max(Some(env.occurred_at));
        let id = env.event_id.as_str();
        match &env.event {
            Event::CustomerUpserted(c) => {
                self.add_identity(&c.identity);
                let profile = Profile {
                    first_name: c.first_name.clone(),
                    last_name: c.last_name.clone(),
                    addresses: c.addresses.clone(),
                    consent: c.consent.clone(),
                    tags: c.tags.clone(),
                    note: c.note.clone(),
                    deleted: c.deleted,
                    created_at: c.created_at,
                };
                Reg::join(&mut self.profile, Stamp::new(0, c.updated_at, id), profile);
            }
            Event::OrderUpserted(o) => self.add_identity(&o.customer),
            Event::Touch(t) => {
                self.add_identity(&t.identity);
                let entry = TouchEntry {
                    at: t.at,
                    touch_id: t.touch_id.clone(),
                    utm: t.utm.clone(),
                    landing_page: t.landing_page.clone(),
                    referrer: t.referrer.clone(),
                    gclid: t.gclid.clone(),
                    fbclid: t.fbclid.clone(),
                };
                self.touch_ids.insert(&t.touch_id);
                self.touch_counts.count(&t.utm);
                if self.first_touch.as_ref().is_none_or(|f| entry < *f) {
                    self.first_touch = Some(entry.clone());
                }
                // Two touches with one id: the later one (by its own time, then
                // content) is the touch, whichever arrived last.
                match self.touches.get(&t.touch_id) {
                    Some(cur) if *cur >= entry => {}
                    _ => {
                        self.touches.insert(t.touch_id.clone(), entry);
                    }
                }
            }
            Event::Identify(i) => self.add_identity(&i.identity),
            Event::TicketUpdated(t) => {
                self.add_identity(&t.requester);
                let key = format!("{}:{}", t.provider, t.ticket_id);
                let slot = self.tickets.entry(key);
                let stamp = Stamp::new(0, t.updated_at, id);
                match slot {
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        if e.get().stamp < stamp {
                            e.insert(Reg {
                                stamp,
                                value: t.clone(),
                            });
                        }
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(Reg {
                            stamp,
                            value: t.clone(),
                        });
                    }
                }
            }
            Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => self.add_identity(&p.payer),
            Event::CustomerRedacted(_) => {
                self.redacted = true;
                self.erasure_requested = true;
            }
            _ => {}
        }
        if self.redacted {
            self.scrub();
        }
        true
    }

    /// Removes personal data, keeping counts and dates.
    pub fn scrub(&mut self) {
        self.redacted = true;
        self.identities.clear();
        if let Some(p) = &mut self.profile {
            let v = &mut p.value;
            v.first_name = None;
            v.last_name = None;
            v.addresses.clear();
            v.note = None;
            v.tags.clear();
        }
        for t in self.tickets.values_mut() {
            t.value.scrub();
        }
        for t in self.touches.values_mut().chain(self.first_touch.as_mut()) {
            t.scrub();
        }
    }

    /// Keeps the newest touches and tickets and bounds the touch counts. What
    /// stays depends only on the events folded in: the newest N of the
    /// newest observation per id (an older observation of a dropped id is
    /// older than everything kept and goes too), the earliest touch, counts.
    pub fn bound(&mut self, limits: &Limits) {
        let n = limits.touches.max(1);
        if self.touches.len() > n {
            let mut by_time: Vec<(&TouchEntry, &String)> =
                self.touches.iter().map(|(k, t)| (t, k)).collect();
            by_time.sort();
            let drop: Vec<String> = by_time[..by_time.len() - n]
                .iter()
                .map(|(_, k)| (*k).clone())
                .collect();
            for k in drop {
                self.touches.remove(&k);
            }
        }
        let n = limits.tickets.max(1);
        if self.tickets.len() > n {
            let mut by_stamp: Vec<(&Stamp, &String)> =
                self.tickets.iter().map(|(k, t)| (&t.stamp, k)).collect();
            by_stamp.sort();
            let drop: Vec<String> = by_stamp[..by_stamp.len() - n]
                .iter()
                .map(|(_, k)| (*k).clone())
                .collect();
            for k in drop {
                self.tickets.remove(&k);
            }
        }
        self.touch_counts.bound(limits.touch_values);
    }

    /// Touches folded in (distinct touch ids).
    pub fn touch_count(&self) -> u64 {
        // State written before the ids were kept counts what it holds.
        self.touch_ids.count().max(self.touches.len() as u64)
    }
}
