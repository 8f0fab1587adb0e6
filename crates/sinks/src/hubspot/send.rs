//! Draining the queue: upsert requests, their answers, rejections and associations.

use super::*;

impl Portal {
    /// Waits for a slot, sends, and records the request with the planner.
    pub(super) async fn request(
        &mut self,
        endpoint: Endpoint,
        body: &Value,
    ) -> Result<Answer, WriteError> {
        loop {
            let now = Instant::now();
            let slot = self.planner.next_slot(now);
            let wait = slot.saturating_duration_since(now);
            if wait > MAX_INLINE_WAIT {
                return Err(WriteError::Retryable {
                    message: format!(
                        "HubSpot quota: the next request may go in {:.0} s ({} requests in the rolling day)",
                        wait.as_secs_f64(),
                        self.planner.daily_count()
                    ),
                    retry_after: Some(wait),
                });
            }
            if wait.is_zero() {
                self.metrics.quota_wait.observe(0.0);
                break;
            }
            tokio::time::sleep_until(slot).await;
            self.metrics.quota_wait.observe(wait.as_secs_f64());
            // Re-check: nothing else sends meanwhile, so this passes at once.
            if self.planner.next_slot(Instant::now()) <= Instant::now() {
                break;
            }
        }
        let result = self.client.post(endpoint, body).await;
        let ended = Instant::now();
        self.planner.record(ended);
        match result {
            Ok(answer) => Ok(answer),
            Err(Failure::RateLimited {
                retry_after,
                policy,
                message,
            }) => {
                self.planner.pause_until(ended + retry_after);
                tracing::warn!(policy = %policy, retry_after_ms = retry_after.as_millis() as u64, "HubSpot rate limit");
                Err(WriteError::Retryable {
                    message: format!("{message} (policy {policy})"),
                    retry_after: Some(retry_after),
                })
            }
            Err(Failure::Transient {
                message,
                retry_after,
            }) => {
                if let Some(r) = retry_after {
                    self.planner.pause_until(ended + r);
                }
                Err(WriteError::Retryable {
                    message,
                    retry_after,
                })
            }
            Err(Failure::Fatal { message }) => Err(WriteError::Fatal { message }),
        }
    }

    pub(super) fn reject(&mut self, sources: Vec<SourceId>, code: &str, reason: &str) {
        for s in sources {
            if self.memory.rejected.len() >= 10_000 {
                self.memory.rejected.clear();
            }
            self.memory
                .rejected
                .insert(s.clone(), (code.to_string(), reason.to_string()));
            self.rejected_now
                .push((s, code.to_string(), reason.to_string()));
        }
    }

    /// The next chunk of contacts: priority first, then in arrival order.
    pub(super) fn next_contacts(&self) -> Vec<String> {
        let mut all: Vec<(&String, &ContactOp)> = self.queue.contacts.iter().collect();
        all.sort_by_key(|(_, op)| (!op.priority, op.seq));
        all.into_iter()
            .take(self.batch_size)
            .map(|(e, _)| e.clone())
            .collect()
    }

    pub(super) fn next_deals(&self) -> Vec<String> {
        let mut all: Vec<(&String, &DealOp)> = self.queue.deals.iter().collect();
        all.sort_by_key(|(_, op)| op.seq);
        all.into_iter()
            .take(self.batch_size)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(super) async fn drain(&mut self, object: Object) -> Result<(), WriteError> {
        loop {
            let chunk = match object {
                Object::Contact => self.next_contacts(),
                Object::Deal => self.next_deals(),
            };
            if chunk.is_empty() {
                return Ok(());
            }
            let mut work = vec![chunk];
            while let Some(chunk) = work.pop() {
                if let ChunkEnd::Again(parts) = self.upsert(object, &chunk).await? {
                    // Later parts first on the stack, so the first half goes first.
                    work.extend(parts.into_iter().rev());
                }
            }
        }
    }

    /// Sends one upsert request for `ids` (emails or order ids) of the queue.
    pub(super) async fn upsert(
        &mut self,
        object: Object,
        ids: &[String],
    ) -> Result<ChunkEnd, WriteError> {
        let (endpoint, id_property) = match object {
            Object::Contact => (Endpoint::ContactsUpsert, "email".to_string()),
            Object::Deal => (Endpoint::DealsUpsert, self.order_id_property.clone()),
        };
        let mut inputs = Vec::new();
        let mut sent: Vec<String> = Vec::new();
        for id in ids {
            let props = match object {
                Object::Contact => self.queue.contacts.get(id).map(ContactOp::properties),
                Object::Deal => self.queue.deals.get(id).map(|d| d.props.clone()),
            };
            let Some(props) = props else { continue };
            if props.is_empty() {
                // A trigger with nothing mapped: done without a request.
                self.complete(object, id, None);
                continue;
            }
            inputs.push(json!({
                "idProperty": id_property,
                "id": id,
                "objectWriteTraceId": sent.len().to_string(),
                "properties": props,
            }));
            sent.push(id.clone());
        }
        if sent.is_empty() {
            return Ok(ChunkEnd::Done);
        }
        let answer = self.request(endpoint, &json!({ "inputs": inputs })).await?;
        let (body, partial) = match answer {
            Answer::Done(body) => (body, false),
            Answer::Partial(body) => (body, true),
            Answer::Invalid { status, body } => {
                return self.refused(object, &sent, status, &body);
            }
        };
        // Ids of the results, by input.
        let mut ids_of: HashMap<usize, String> = HashMap::new();
        for r in body
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(hs_id) = r.get("id").and_then(Value::as_str) else {
                continue;
            };
            let input = trace_of(r).or_else(|| {
                let v = r.pointer(&format!("/properties/{id_property}"))?.as_str()?;
                sent.iter().position(|s| s.eq_ignore_ascii_case(v))
            });
            if let Some(i) = input {
                ids_of.insert(i, hs_id.to_string());
            }
        }
        let mut failed: HashMap<usize, (String, String)> = HashMap::new();
        // An error that names no input we can place.
        let mut unplaced: Option<(String, String)> = None;
        if partial {
            for e in body
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let named = named_inputs(e, &sent);
                let d = describe(e);
                if named.is_empty() {
                    unplaced.get_or_insert(d);
                    continue;
                }
                for i in named {
                    failed.insert(i, d.clone());
                }
            }
        }
        // A single input that got an error without a result is that error's.
        if let (Some(d), true) = (&unplaced, sent.len() == 1)
            && !ids_of.contains_key(&0)
        {
            failed.insert(0, d.clone());
        }
        let mut again = Vec::new();
        for (i, id) in sent.iter().enumerate() {
            if let Some((code, reason)) = failed.get(&i) {
                let sources = self.remove(object, id);
                self.reject(sources, code, reason);
            } else if ids_of.contains_key(&i) || unplaced.is_none() {
                self.complete(object, id, ids_of.get(&i).cloned());
            } else {
                again.push(id.clone());
            }
        }
        // Every retry is smaller than its request, or split: this ends.
        if again.is_empty() {
            Ok(ChunkEnd::Done)
        } else if again.len() == sent.len() {
            Ok(ChunkEnd::Again(halves(again)))
        } else {
            Ok(ChunkEnd::Again(vec![again]))
        }
    }

    /// A 400/409/422 for a whole upsert request.
    pub(super) fn refused(
        &mut self,
        object: Object,
        sent: &[String],
        status: u16,
        body: &Value,
    ) -> Result<ChunkEnd, WriteError> {
        let (code, reason) = describe(body);
        if blames_configuration(body) {
            return Err(WriteError::Fatal {
                message: format!("HubSpot refused the request ({status}, {code}): {reason}"),
            });
        }
        // Each named input with the most specific error that names it.
        let mut named: BTreeMap<usize, (String, String)> = named_inputs(body, sent)
            .into_iter()
            .map(|i| (i, (code.clone(), reason.clone())))
            .collect();
        for e in body
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let inputs = named_inputs(e, sent);
            if !inputs.is_empty() {
                let d = describe(e);
                for i in inputs {
                    named.insert(i, d.clone());
                }
            }
        }
        if named.is_empty() {
            if sent.len() == 1 {
                let sources = self.remove(object, &sent[0]);
                self.reject(sources, &code, &reason);
                return Ok(ChunkEnd::Done);
            }
            tracing::debug!(
                inputs = sent.len(),
                "HubSpot refused a batch without naming an input: splitting it"
            );
            return Ok(ChunkEnd::Again(halves(sent.to_vec())));
        }
        let mut rest = Vec::new();
        for (i, id) in sent.iter().enumerate() {
            if let Some((code, reason)) = named.get(&i) {
                let sources = self.remove(object, id);
                self.reject(sources, code, reason);
            } else {
                rest.push(id.clone());
            }
        }
        Ok(if rest.is_empty() {
            ChunkEnd::Done
        } else {
            ChunkEnd::Again(vec![rest])
        })
    }

    pub(super) fn remove(&mut self, object: Object, id: &str) -> Vec<SourceId> {
        match object {
            Object::Contact => self
                .queue
                .contacts
                .remove(id)
                .map(|op| op.sources())
                .unwrap_or_default(),
            Object::Deal => self
                .queue
                .deals
                .remove(id)
                .map(|op| op.sources())
                .unwrap_or_default(),
        }
    }

    /// An upsert HubSpot accepted: remember what was written.
    pub(super) fn complete(&mut self, object: Object, id: &str, hs_id: Option<String>) {
        match object {
            Object::Contact => {
                let Some(op) = self.queue.contacts.remove(id) else {
                    return;
                };
                if let Some(hs) = hs_id {
                    bounded(&mut self.memory.contact_ids);
                    self.memory.contact_ids.insert(id.to_string(), hs);
                    self.memory.not_found.remove(id);
                }
                if let Some(c) = &op.customer {
                    self.memory.mark_written('c', &c.key, c.stamp);
                    self.memory.erased.remove(&c.key);
                    for order_id in &c.orders {
                        if self.memory.deal_ids.contains_key(order_id) {
                            self.queue.wants.insert(Want {
                                order_id: order_id.clone(),
                                customer_key: c.key.clone(),
                            });
                        }
                    }
                }
                if op.trigger_at != i64::MIN {
                    bounded(&mut self.memory.last_trigger_at);
                    let at = self
                        .memory
                        .last_trigger_at
                        .entry(id.to_string())
                        .or_insert(i64::MIN);
                    *at = (*at).max(op.trigger_at);
                }
                for s in op.also {
                    if let SourceId::Trigger { trigger_id } = s {
                        bounded_set(&mut self.memory.triggers_done);
                        self.memory.triggers_done.insert(trigger_id);
                    }
                }
            }
            Object::Deal => {
                let Some(op) = self.queue.deals.remove(id) else {
                    return;
                };
                self.memory.mark_written('o', &op.key, op.stamp);
                bounded(&mut self.memory.deal_owners);
                self.memory
                    .deal_owners
                    .insert(id.to_string(), op.customer_key.clone());
                if let Some(hs) = hs_id {
                    bounded(&mut self.memory.deal_ids);
                    self.memory.deal_ids.insert(id.to_string(), hs);
                }
                if let Some(ck) = op.customer_key {
                    self.queue.wants.insert(Want {
                        order_id: id.to_string(),
                        customer_key: ck,
                    });
                }
            }
        }
    }

    /// Sends the waiting GDPR deletes, one request per contact, oldest first.
    /// A contact HubSpot does not have (404) is as good as deleted; a refusal
    /// that blames the configuration (the id property does not exist or has
    /// no unique values) stops the sink; any other refusal dead-letters the
    /// erased customer's record with HubSpot's message.
    pub(super) async fn erase(&mut self) -> Result<(), WriteError> {
        loop {
            let Some((key, body, id_property)) = self
                .queue
                .erasures
                .iter()
                .min_by_key(|(_, e)| e.seq)
                .map(|(k, e)| {
                    (
                        k.clone(),
                        json!({ "objectId": e.object_id, "idProperty": e.id_property }),
                        e.id_property.clone(),
                    )
                })
            else {
                return Ok(());
            };
            match self.request(Endpoint::ContactsGdprDelete, &body).await? {
                Answer::Done(_) | Answer::Partial(_) => self.erased(&key),
                Answer::Invalid { status: 404, .. } => {
                    tracing::debug!(%id_property, "GDPR delete: HubSpot has no such contact (any more)");
                    self.erased(&key);
                }
                Answer::Invalid { status, body } => {
                    let (code, reason) = describe(&body);
                    if blames_configuration(&body) {
                        return Err(WriteError::Fatal {
                            message: format!(
                                "HubSpot refused a GDPR delete by {id_property} ({status}, {code}): {reason} \
                                 (the contact property customer_id is mapped to must exist and have unique values)"
                            ),
                        });
                    }
                    let sources = self
                        .queue
                        .erasures
                        .remove(&key)
                        .map(|e| e.sources())
                        .unwrap_or_default();
                    self.reject(
                        sources,
                        &code,
                        &format!(
                            "HubSpot refused the GDPR delete of the contact ({status}): {reason}"
                        ),
                    );
                }
            }
        }
    }

    /// A contact deleted (or found gone): remember the erasure and forget
    /// what this process knew of the contact.
    pub(super) fn erased(&mut self, key: &str) {
        let Some(op) = self.queue.erasures.remove(key) else {
            return;
        };
        self.memory.mark_written('c', key, op.stamp);
        bounded_set(&mut self.memory.erased);
        self.memory.erased.insert(key.to_string());
        if let Some(email) = &op.email {
            self.memory.not_found.remove(email);
            self.memory.last_trigger_at.remove(email);
            if let Some(contact_id) = self.memory.contact_ids.remove(email) {
                // HubSpot deleted the contact's associations with it.
                self.queue.pairs.retain(|(_, c), _| *c != contact_id);
                self.queue.unpairs.retain(|(_, c)| *c != contact_id);
                for contacts in self.memory.associated.values_mut() {
                    contacts.remove(&contact_id);
                }
                self.memory.associated.retain(|_, cs| !cs.is_empty());
            }
        }
        for s in op.also {
            if let SourceId::Trigger { trigger_id } = s {
                bounded_set(&mut self.memory.triggers_done);
                self.memory.triggers_done.insert(trigger_id);
            }
        }
    }

    /// Turns wanted associations into (deal id, contact id) pairs, looking up
    /// contact ids HubSpot gave before this process started.
    pub(super) async fn resolve_wants(&mut self) -> Result<(), WriteError> {
        let mut lookup: Vec<String> = Vec::new();
        for w in &self.queue.wants {
            let Some(email) = self.memory.emails.get(&w.customer_key) else {
                continue;
            };
            if !self.memory.contact_ids.contains_key(email)
                && !self.memory.not_found.contains(email)
                && !lookup.contains(email)
            {
                lookup.push(email.clone());
            }
        }
        for chunk in lookup.chunks(self.batch_size) {
            let inputs: Vec<Value> = chunk.iter().map(|e| json!({ "id": e })).collect();
            let body = json!({
                "idProperty": "email",
                "properties": ["email"],
                "propertiesWithHistory": [],
                "inputs": inputs,
            });
            let body = match self.request(Endpoint::ContactsRead, &body).await? {
                Answer::Done(b) | Answer::Partial(b) => b,
                Answer::Invalid { status, body } => {
                    let (code, reason) = describe(&body);
                    tracing::warn!(status, %code, %reason, "HubSpot refused a contact lookup");
                    Value::Null
                }
            };
            for r in body
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(id), Some(email)) = (
                    r.get("id").and_then(Value::as_str),
                    r.pointer("/properties/email").and_then(Value::as_str),
                ) else {
                    continue;
                };
                bounded(&mut self.memory.contact_ids);
                self.memory
                    .contact_ids
                    .insert(email.to_lowercase(), id.to_string());
            }
            for e in chunk {
                if !self.memory.contact_ids.contains_key(e) {
                    bounded_set(&mut self.memory.not_found);
                    self.memory.not_found.insert(e.clone());
                }
            }
        }
        let wants: Vec<Want> = self.queue.wants.drain().collect();
        for w in wants {
            // The customer whose order the deal's newest projection says it
            // is, when known: a customer projection that still lists an order
            // that moved on asks for nothing.
            let owner = self.memory.deal_owners.get(&w.order_id);
            if owner.is_some_and(|o| o.as_deref() != Some(w.customer_key.as_str())) {
                tracing::debug!(order_id = %w.order_id, customer = %w.customer_key, "association of an order that moved to another customer: not made");
                continue;
            }
            let exclusive = owner.is_some();
            let Some(deal_id) = self.memory.deal_ids.get(&w.order_id).cloned() else {
                continue;
            };
            let Some(email) = self.memory.emails.get(&w.customer_key) else {
                self.metrics.skip("association_customer_unknown");
                continue;
            };
            let Some(contact_id) = self.memory.contact_ids.get(email).cloned() else {
                self.metrics.skip("association_contact_not_found");
                continue;
            };
            let pair = (deal_id, contact_id);
            // Moved back before the archive went out: keep it.
            self.queue.unpairs.remove(&pair);
            if !self.memory.is_associated(&pair.0, &pair.1) {
                *self.queue.pairs.entry(pair).or_insert(false) |= exclusive;
            } else if exclusive {
                self.archive_others(&pair.0, &pair.1);
            }
        }
        Ok(())
    }

    /// Counts (under `reason`) and logs the inputs a partly successful batch
    /// answer (HubSpot's `errors`) says were refused.
    fn skip_refused(&self, body: &Value, reason: &str, message: &str) {
        let n = body
            .get("errors")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if n > 0 {
            let (code, why) = describe(&body["errors"][0]);
            tracing::warn!(errors = n, %code, reason = %why, "{message}");
            self.metrics
                .skipped
                .with_label_values(&[reason])
                .inc_by(n as u64);
        }
    }

    /// The deal `deal` belongs to `contact` alone: the associations this
    /// process made between it and other contacts are to be archived.
    fn archive_others(&mut self, deal: &str, contact: &str) {
        for other in self.memory.other_contacts(deal, contact) {
            self.queue.unpairs.insert((deal.to_string(), other));
        }
    }

    pub(super) async fn associate(&mut self) -> Result<(), WriteError> {
        loop {
            let mut pending: Vec<(String, String)> = self.queue.pairs.keys().cloned().collect();
            if pending.is_empty() {
                return Ok(());
            }
            pending.sort();
            pending.truncate(self.batch_size);
            let mut work = vec![pending];
            while let Some(chunk) = work.pop() {
                let inputs: Vec<Value> = chunk
                    .iter()
                    .map(|(d, c)| json!({"from": {"id": d}, "to": {"id": c}}))
                    .collect();
                let answer = self
                    .request(Endpoint::Associations, &json!({ "inputs": inputs }))
                    .await?;
                let failed_all = match answer {
                    Answer::Done(_) => false,
                    Answer::Partial(body) => {
                        self.skip_refused(
                            &body,
                            "association_rejected",
                            "HubSpot refused some associations",
                        );
                        false
                    }
                    Answer::Invalid { status, body } => {
                        if chunk.len() > 1 {
                            work.extend(halves(chunk.clone()).into_iter().rev());
                            continue;
                        }
                        let (code, reason) = describe(&body);
                        tracing::warn!(status, %code, %reason, "HubSpot refused an association");
                        self.metrics.skip("association_rejected");
                        true
                    }
                };
                for pair in chunk {
                    let exclusive = self.queue.pairs.remove(&pair).unwrap_or(false);
                    if !failed_all {
                        let (deal, contact) = pair;
                        if exclusive {
                            self.archive_others(&deal, &contact);
                        }
                        self.memory.remember_association(deal, contact);
                    }
                }
            }
        }
    }

    /// Archives the associations of moved deals with their former contacts
    /// (`queue.unpairs`), in requests of up to `batch_size` deals, each input
    /// a deal and the contacts to part it from. A refused request is split in
    /// halves until the culprit stands alone, which is then given up (logged
    /// and counted as `association_archive_rejected`); 429s and outages fail
    /// the write as retryable, and what is left waits in the queue.
    pub(super) async fn dissociate(&mut self) -> Result<(), WriteError> {
        loop {
            let mut by_deal: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (d, c) in &self.queue.unpairs {
                by_deal.entry(d.clone()).or_default().push(c.clone());
            }
            if by_deal.is_empty() {
                return Ok(());
            }
            let mut pending: Vec<(String, Vec<String>)> = by_deal
                .into_iter()
                .map(|(d, mut cs)| {
                    cs.sort();
                    (d, cs)
                })
                .collect();
            pending.truncate(self.batch_size);
            let mut work = vec![pending];
            while let Some(chunk) = work.pop() {
                let inputs: Vec<Value> = chunk
                    .iter()
                    .map(|(d, cs)| {
                        let to: Vec<Value> = cs.iter().map(|c| json!({ "id": c })).collect();
                        json!({"from": {"id": d}, "to": to})
                    })
                    .collect();
                let answer = self
                    .request(Endpoint::AssociationsArchive, &json!({ "inputs": inputs }))
                    .await?;
                match answer {
                    Answer::Done(_) => {}
                    Answer::Partial(body) => {
                        self.skip_refused(
                            &body,
                            "association_archive_rejected",
                            "HubSpot refused to archive some associations",
                        );
                    }
                    Answer::Invalid { status, body } => {
                        if chunk.len() > 1 {
                            work.extend(halves(chunk).into_iter().rev());
                            continue;
                        }
                        let (code, reason) = describe(&body);
                        tracing::warn!(status, %code, %reason, "HubSpot refused to archive an association");
                        self.metrics.skip("association_archive_rejected");
                    }
                }
                // Archived, or given up: either way not asked again.
                for (deal, contacts) in chunk {
                    for contact in contacts {
                        self.memory.forget_association(&deal, &contact);
                        self.queue.unpairs.remove(&(deal.clone(), contact));
                    }
                }
            }
        }
    }
}
