// storefold inspector: reads the processor's query API and renders it.
// Every piece of data goes into the page through textContent or attribute
// setters, never as HTML.
"use strict";

// ISO 4217 minor-unit digits that are not 2 (as storefold-core's Currency).
const EXPONENTS = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0,
  RWF: 0, UGX: 0, UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  CLF: 4, UYW: 4,
};

// Minor units to "409.94 USD" with string arithmetic only (no floats).
function money(minor, currency) {
  if (minor === null || minor === undefined || !currency) return "";
  const exp = Object.prototype.hasOwnProperty.call(EXPONENTS, currency) ? EXPONENTS[currency] : 2;
  let digits = String(minor);
  let sign = "";
  if (digits.startsWith("-")) { sign = "-"; digits = digits.slice(1); }
  if (exp === 0) return sign + digits + " " + currency;
  digits = digits.padStart(exp + 1, "0");
  return sign + digits.slice(0, digits.length - exp) + "." + digits.slice(digits.length - exp) + " " + currency;
}
const m = (v) => (v ? money(v.minor, v.currency) : "");
// A MoneyBag ({"USD": 1234, "EUR": 5}) as "12.34 USD, 0.05 EUR".
const bag = (b) => (b ? Object.keys(b).map((c) => money(b[c], c)).join(", ") || "0" : "");
const nonEmpty = (b) => !!b && Object.keys(b).length > 0;
// Every observation of a payment, refund or dispute record
// ({"observations": {event_id: {...}}}), oldest first.
const observations = (records) => Object.values(records || {})
  .flatMap((r) => Object.entries(r.observations || {}).map(([id, v]) => Object.assign({ event_id: id }, v)))
  .sort((a, b) => (Date.parse(a.at) - Date.parse(b.at)) || (a.event_id < b.event_id ? -1 : 1));
// Amounts a reporting currency could not convert ({figure: MoneyBag}).
const unconverted = (u) => Object.keys(u || {}).map((k) => k.replace(/_/g, " ") + " " + bag(u[k])).join("; ");
const PAID_SOURCES = {
  provider: "the payment provider's captures",
  store: "the store's word (no payment provider reported this order's payments)",
  none: "nothing captured",
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}
const $ = (id) => document.getElementById(id);
const num = (n) => (n ? " (" + (n.startsWith("#") ? n : "#" + n) + ")" : "");
const when = (iso) => (iso ? iso.replace("T", " ").replace(/Z$/, " UTC") : "");
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function row(tbody, cells) {
  const tr = el("tr");
  for (const c of cells) tr.append(c instanceof Node ? el("td", {}, c) : el("td", { text: c === undefined || c === null ? "" : String(c) }));
  tbody.append(tr);
  return tr;
}
function fact(dl, name, value) {
  if (value === null || value === undefined || value === "") return;
  dl.append(el("dt", { text: name }), value instanceof Node ? el("dd", {}, value) : el("dd", { text: String(value) }));
}

function setState(state, message, isError) {
  document.body.dataset.state = state;
  const s = $("status");
  s.textContent = message || "";
  s.className = isError ? "error" : "";
}

function link(params, text) {
  const q = new URLSearchParams(params).toString();
  const a = el("a", { href: "?" + q, text });
  a.addEventListener("click", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    history.pushState(null, "", "?" + q);
    route();
  });
  return a;
}

// The operator token: kept in this tab's sessionStorage (gone when the tab
// closes), sent as a bearer token with every call to the query API.
const TOKEN_KEY = "storefold.token";
const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

// A token given in the address's fragment (/ui#token=…, as `storefold dev`
// prints it; a fragment is never sent to a server) is stored, then removed
// from the address bar and the history.
function tokenFromFragment() {
  const t = new URLSearchParams(location.hash.slice(1)).get("token");
  if (t) sessionStorage.setItem(TOKEN_KEY, t.trim());
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
}

async function api(path) {
  let res;
  const headers = { accept: "application/json" };
  if (token()) headers.authorization = "Bearer " + token();
  try {
    res = await fetch(path, { headers, credentials: "omit", referrerPolicy: "no-referrer" });
  } catch (e) {
    return { status: 0, body: { error: "the processor did not answer: " + e } };
  }
  let body = null;
  try { body = await res.json(); } catch (e) { body = { error: "unreadable answer (" + res.status + ")" }; }
  return { status: res.status, body };
}

// A failed answer as a state and message; true when it was one.
function failed(res, tenant, what) {
  if (res.status === 200) return false;
  if (res.status === 401) {
    signedOut("The operator token was refused; sign in with a valid one.", true);
  } else if (res.status === 404 && res.body && res.body.reason === "no_such_tenant") {
    setState("not_found", "Tenant " + tenant + " is not one this token may read.", true);
  } else if (res.status === 404) {
    setState("not_found", "No " + what + " in tenant " + tenant + ".", true);
  } else if (res.status === 421) {
    const p = res.body && res.body.partition;
    setState("not_owner", "Tenant " + tenant + " lives on partition " + p +
      ", which this processor instance does not own. Open the Inspector on the instance that owns partition " + p + ".", true);
  } else {
    const why = (res.body && (res.body.error || res.body.reason)) || "unknown error";
    setState("error", "The query API answered " + res.status + ": " + why, true);
  }
  return true;
}

const tenantPath = (t) => "/v1/tenants/" + encodeURIComponent(t);

async function showCustomer(tenant, params, label) {
  $("order").hidden = true;
  $("customer").hidden = true;
  setState("loading", "Looking up " + label + " in " + tenant + "…");
  const res = await api(tenantPath(tenant) + "/customers" + params);
  if (failed(res, tenant, "customer with " + label)) return;
  const c = res.body;
  const name = [c.first_name, c.last_name].filter(Boolean).join(" ");
  $("customer-name").textContent = name || c.email || c.phone || c.customer_id;
  const p = $("profile");
  clear(p);
  fact(p, "Customer id", c.customer_id);
  if (c.resolved_from) fact(p, "Found through", c.resolved_from);
  fact(p, "Name", name);
  fact(p, "Email", c.email);
  fact(p, "Phone", c.phone);
  const segs = el("span");
  for (const s of c.segments || []) segs.append(el("span", { class: "tag", text: s }));
  fact(p, "Segments", (c.segments || []).length ? segs : "none");
  if ((c.tags || []).length) fact(p, "Tags", c.tags.join(", "));
  fact(p, "Orders", c.orders_count);
  fact(p, "Touches", c.touches);
  fact(p, "Returns", c.returns);
  fact(p, "Tickets", (c.tickets || []).length + " (" + (c.open_tickets || 0) + " open)");
  if (c.csat_avg_x100 !== null && c.csat_avg_x100 !== undefined) {
    fact(p, "CSAT", Math.floor(c.csat_avg_x100 / 100) + "." + String(c.csat_avg_x100 % 100).padStart(2, "0") + " (" + c.csat_count + " ratings)");
  }
  fact(p, "Chargebacks", c.chargebacks + " (" + c.chargebacks_lost + " lost)");
  fact(p, "First seen", when(c.first_seen_at));
  fact(p, "Last event", when(c.last_event_at));
  if (c.redacted) fact(p, "Redacted", "yes");

  const rev = $("revenue").tBodies[0];
  clear(rev);
  for (const r of c.revenue || []) {
    const tr = row(rev, [r.currency, money(r.gross, r.currency), money(r.refunded, r.currency),
      money(r.chargeback_lost, r.currency), money(r.net, r.currency), r.orders, money(r.aov, r.currency),
      money(r.cogs || 0, r.currency), r.gross_margin === null || r.gross_margin === undefined ? "unknown" : money(r.gross_margin, r.currency)]);
    tr.cells[4].setAttribute("data-net", money(r.net, r.currency));
    tr.cells[8].setAttribute("data-margin", tr.cells[8].textContent);
    for (let i = 1; i < tr.cells.length; i++) tr.cells[i].className = "num";
  }
  if (!(c.revenue || []).length) row(rev, ["no paid orders"]);
  const rr = c.revenue_reporting, rep = $("revenue-reporting");
  clear(rep);
  rep.hidden = !rr;
  if (rr) {
    const cur = rr.currency;
    rep.append("In the reporting currency " + cur + ": gross " + money(rr.gross, cur) + ", refunded " +
      money(rr.refunded, cur) + ", chargebacks lost " + money(rr.chargeback_lost, cur) + ", net ",
      el("strong", { "data-net-reporting": money(rr.net, cur), text: money(rr.net, cur) }),
      ", fees " + money(rr.fees, cur) + ", cost of goods " + money(rr.cogs || 0, cur) + ", gross margin " +
      (rr.gross_margin === null || rr.gross_margin === undefined ? "unknown" : money(rr.gross_margin, cur)) + ".");
    const u = unconverted(rr.unconverted);
    if (u) rep.append(" Not converted (no rate within the allowed age): " + u + ".");
  }

  const ids = $("identities").tBodies[0];
  clear(ids);
  for (const i of c.identities || []) row(ids, [i.kind, i.value]);
  const merges = $("merges").tBodies[0];
  clear(merges);
  for (const mr of c.merged || []) {
    row(merges, [link({ tenant, customer: mr.merged_id }, mr.merged_id), mr.reason,
      mr.at ? when(mr.at) : "", (mr.evidence || []).join(", ")]);
  }
  if (!(c.merged || []).length) row(merges, ["none"]);
  const shared = $("shared"), sh = c.shared_identities || [];
  shared.hidden = !sh.length;
  shared.textContent = sh.length
    ? "Claimed by other customers too, so merged nothing: " + sh.map((x) => x.kind + " " + x.key +
      (x.at ? " (since " + when(x.at) + "; claims " + (x.evidence || []).join(", ") + ")" : "")).join(", ") + "."
    : "";
  const decisions = $("decisions"), ds = c.identity_decisions || [];
  decisions.hidden = !ds.length;
  clear(decisions.tBodies[0]);
  for (const d of ds) row(decisions.tBodies[0], [d.decision, d.key, d.other, when(d.at), d.event_id]);

  $("customer").hidden = false;
  setState("loading", "Loading the journey of " + (c.email || c.customer_id) + "…");
  await timeline(tenant, c);
  setState("customer", "");
}

async function timeline(tenant, c) {
  const items = [];
  const add = (at, kind, ...parts) => items.push({ at, kind, parts });
  const touchText = (t) => {
    const u = t.utm || {};
    const bits = [];
    for (const k of ["source", "medium", "campaign", "term", "content"]) if (u[k]) bits.push("utm_" + k + "=" + u[k]);
    if (t.landing_page) bits.push("landing " + t.landing_page);
    if (t.referrer) bits.push("from " + t.referrer);
    if (t.gclid) bits.push("gclid");
    if (t.fbclid) bits.push("fbclid");
    return bits.join(" · ") || "direct";
  };
  if (c.first_touch) add(c.first_touch.at, "touch", (c.last_touch && c.last_touch.touch_id === c.first_touch.touch_id ? "first & last touch: " : "first touch: ") + touchText(c.first_touch));
  if (c.last_touch && (!c.first_touch || c.last_touch.touch_id !== c.first_touch.touch_id)) add(c.last_touch.at, "touch", "last touch: " + touchText(c.last_touch));
  for (const t of c.tickets || []) {
    add(t.created_at, "ticket", t.provider + " ticket " + t.ticket_id + " " + t.status +
      ((t.reasons || []).length ? " (" + t.reasons.join(", ") + ")" : "") + (t.csat ? " · CSAT " + t.csat : ""));
  }
  const orders = c.orders || [];
  const details = await Promise.all(orders.map((o) => api(tenantPath(tenant) + "/orders/" + encodeURIComponent(o.order_id))));
  orders.forEach((o, i) => {
    add(o.created_at, "order", "order ", link({ tenant, order: o.order_id }, o.order_id),
      num(o.number) + " placed: " + m(o.total) + ", " + o.status);
    const d = details[i];
    if (d.status !== 200) {
      add(o.created_at, "order", "details of " + o.order_id + " unavailable (" + d.status + ")");
      return;
    }
    const ord = d.body.order || {};
    // A lifecycle step once: later events repeating the same status and
    // amount (a charge.refunded restating the charge) add nothing here.
    const seen = new Set();
    const fresh = (...k) => { const key = k.join("\u0000"); if (seen.has(key)) return false; seen.add(key); return true; };
    for (const v of observations(ord.payments)) {
      if (!fresh("p", v.provider, v.payment_id, v.capture_id || "", v.status, v.amount.minor, v.amount.currency)) continue;
      add(v.at, "payment", v.provider + " payment " + v.payment_id + (v.capture_id ? " capture " + v.capture_id : "") +
        " " + v.status + ": " + m(v.amount) + " · " + o.order_id);
    }
    for (const sh of d.body.shipments || []) {
      for (const cp of sh.checkpoints || []) {
        add(cp.at, "shipment", (sh.carrier ? sh.carrier + " " : "") + sh.tracking_number + " " + cp.status +
          (cp.location ? " at " + cp.location : "") + (cp.message ? " — " + cp.message : "") + " · " + o.order_id);
      }
    }
    for (const v of observations(ord.refunds)) {
      if (!fresh("r", v.provider, v.refund_id, v.status, v.amount.minor, v.amount.currency)) continue;
      add(v.at, "refund", v.provider + " refund " + v.refund_id + " " + v.status + ": " + m(v.amount) + (v.reason ? " (" + v.reason + ")" : "") + " · " + o.order_id);
    }
    for (const v of observations(ord.disputes)) {
      if (!fresh("d", v.provider, v.dispute_id, v.status, v.amount.minor, v.amount.currency)) continue;
      add(v.at, "dispute", v.provider + " dispute " + v.dispute_id + " " + v.status + ": " + m(v.amount) + " · " + o.order_id);
    }
    for (const rt of Object.values(ord.returns || {})) {
      const v = (rt.resolved || rt.requested || {}).value;
      if (v) add(v.at, "return", v.provider + " return " + v.return_id + " (" + v.reason + (v.resolution ? ", " + v.resolution : "") + ") · " + o.order_id);
    }
  });
  const rank = { touch: 0, order: 1, payment: 2, shipment: 3, ticket: 4, return: 5, refund: 6, dispute: 7 };
  items.sort((a, b) => (Date.parse(a.at) - Date.parse(b.at)) || (rank[a.kind] - rank[b.kind]));
  const ol = $("timeline");
  clear(ol);
  for (const it of items) {
    ol.append(el("li", { "data-kind": it.kind },
      el("time", { dateTime: it.at || "", text: when(it.at) }),
      el("span", { class: "kind kind-" + it.kind, text: it.kind }),
      el("span", {}, ...it.parts)));
  }
  if (!items.length) ol.append(el("li", { text: "nothing yet" }));
}

async function showOrder(tenant, id) {
  $("customer").hidden = true;
  $("order").hidden = true;
  setState("loading", "Loading order " + id + " of " + tenant + "…");
  const res = await api(tenantPath(tenant) + "/orders/" + encodeURIComponent(id));
  if (failed(res, tenant, "order " + id)) return;
  const d = res.body;
  const ord = d.order || {};
  const snap = ord.snapshot ? ord.snapshot.value : null;
  $("order-title").textContent = "Order " + d.order_id + num(snap && snap.number);
  const who = $("order-customer");
  clear(who);
  if (d.customer_id) who.append("Customer ", link({ tenant, customer: d.customer_id }, d.customer_id));
  else who.append("No customer known for this order.");
  const f = $("order-facts");
  clear(f);
  if (snap) {
    fact(f, "Placed", when(snap.created_at));
    fact(f, "Status", snap.status + (snap.financial_status ? " · financial " + snap.financial_status : "") +
      (snap.fulfillment_status ? " · fulfillment " + snap.fulfillment_status : ""));
    fact(f, "Total", m(snap.totals && snap.totals.total));
    if (snap.cancelled_at) fact(f, "Cancelled", when(snap.cancelled_at) + (snap.cancel_reason ? " (" + snap.cancel_reason + ")" : ""));
  }
  const fig = d.figures || {};
  fact(f, "Paid", bag(fig.paid) + " — from " + (PAID_SOURCES[fig.paid_source] || fig.paid_source || "unknown"));
  if (nonEmpty(fig.authorized)) fact(f, "Held (authorised, not captured)", bag(fig.authorized));
  fact(f, "Refunded", bag(fig.refunded));
  fact(f, "Chargebacks lost", bag(fig.chargeback_lost));
  if (nonEmpty(fig.disputed)) fact(f, "Disputed (open)", bag(fig.disputed));
  fact(f, "Net", bag(fig.net));
  fact(f, "Fees", (fig.fees_known ? "" : "not all known: ") + bag(fig.fees) + " (in the currency the provider charged them in)");
  fact(f, "Net after fees", fig.net_after_fees ? bag(fig.net_after_fees) : "unknown (a fee is not known, or in a currency the order was not paid in)");
  fact(f, "Cost of goods", (fig.cogs_known ? "" : "not all known: ") + bag(fig.cogs || {}) +
    ((fig.cogs_unknown || []).length ? " (no unit cost for " + fig.cogs_unknown.join(", ") + ")" : ""));
  fact(f, "Gross margin", fig.gross_margin ? bag(fig.gross_margin) :
    "unknown (a line has no unit cost, the order is unpaid or cancelled, or a cost is in a currency the order was not paid in)");
  const r = fig.reporting;
  if (r) {
    const cur = r.currency;
    fact(f, "In " + cur, "paid " + money(r.paid, cur) + ", refunded " + money(r.refunded, cur) + ", chargebacks lost " +
      money(r.chargeback_lost, cur) + ", net " + money(r.net, cur) + ", fees " + money(r.fees, cur) +
      ", net after fees " + (r.net_after_fees === null || r.net_after_fees === undefined ? "unknown" : money(r.net_after_fees, cur)) +
      ", cost of goods " + money(r.cogs || 0, cur) +
      ", gross margin " + (r.gross_margin === null || r.gross_margin === undefined ? "unknown" : money(r.gross_margin, cur)));
    const u = unconverted(r.unconverted);
    if (u) fact(f, "Not converted to " + cur, u + " (no rate within the allowed age; left out of the " + cur + " figures)");
  }

  // The books: every amount, counted or not, and why.
  const ledger = $("ledger").tBodies[0];
  clear(ledger);
  for (const e of d.ledger || []) {
    // In the reporting currency too, with the date of the rate used.
    const conv = e.converted && e.converted.amount.currency !== e.amount.currency
      ? " = " + m(e.converted.amount) + " (rate of " + e.converted.rate_date + ")" : "";
    const tr = row(ledger, [when(e.at), e.kind.replace(/_/g, " "), e.provider, e.reference,
      m(e.amount) + conv, (e.counted ? "yes" : "no") + (e.figure ? " (" + e.figure.replace(/_/g, " ") + ")" : ""), e.why]);
    tr.setAttribute("data-kind", e.kind);
    tr.setAttribute("data-counted", e.counted ? "true" : "false");
    tr.className = e.counted ? "counted" : "not-counted";
    tr.title = "event " + e.source_event_id;
    tr.cells[4].className = "num";
  }
  if (!(d.ledger || []).length) row(ledger, ["no money reported"]);

  const pays = $("payments").tBodies[0];
  clear(pays);
  for (const p of observations(ord.payments)) {
    const status = p.status + (p.capture_id ? " · capture " + p.capture_id : "") +
      (p.captured ? " · captured " + m(p.captured) + " so far" : "") +
      (p.amount_refunded ? " · refunded " + m(p.amount_refunded) + " so far" : "") +
      (p.failure_reason ? " (" + p.failure_reason + ")" : "");
    row(pays, [when(p.at), p.provider, p.payment_id, status, m(p.amount), p.fee ? m(p.fee) : "", p.method || ""]);
  }
  const refs = $("refunds").tBodies[0];
  clear(refs);
  for (const x of observations(ord.refunds)) {
    row(refs, [when(x.at), x.provider, x.refund_id, x.status + (x.gateway ? " · via " + x.gateway : ""), m(x.amount), x.reason || ""]);
  }
  const disp = $("disputes").tBodies[0];
  clear(disp);
  for (const v of observations(ord.disputes)) {
    row(disp, [when(v.at), v.provider, v.dispute_id, v.status, m(v.amount), v.reason || ""]);
  }
  const ships = $("shipments");
  clear(ships);
  for (const s of d.shipments || []) {
    const box = el("div", { class: "shipment" },
      el("p", {}, el("strong", { text: s.tracking_number }), " " + (s.carrier || "") + " · " + (s.status || "no checkpoint yet") +
        (s.estimated_delivery ? " · expected " + when(s.estimated_delivery) : "")));
    const t = el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "When" }), el("th", { text: "Status" }),
      el("th", { text: "Location" }), el("th", { text: "Message" }))), el("tbody"));
    for (const cp of s.checkpoints || []) row(t.tBodies[0], [when(cp.at), cp.status, cp.location || "", cp.message || ""]);
    box.append(t);
    ships.append(box);
  }
  if (!(d.shipments || []).length) ships.append(el("p", { text: "none" }));
  const rets = $("returns").tBodies[0];
  clear(rets);
  for (const x of Object.values(ord.returns || {})) {
    const v = (x.resolved || x.requested || {}).value;
    if (v) row(rets, [when(v.at), v.provider, v.return_id, v.reason, v.resolution || (x.resolved ? "" : "requested")]);
  }
  $("order").hidden = false;
  setState("order", "");
}

// Reads the page's address and shows what it names.
async function route() {
  const q = new URLSearchParams(location.search);
  const tenant = (q.get("tenant") || $("tenant").value || "").trim();
  if (tenant) $("tenant").value = tenant;
  const email = q.get("email"), phone = q.get("phone");
  if (email || phone) $("who").value = email || phone;
  if (!tenant) {
    $("customer").hidden = true;
    $("order").hidden = true;
    setState("idle", "Choose a tenant and look a customer up by email or phone.");
    return;
  }
  if (q.get("order")) return showOrder(tenant, q.get("order"));
  if (q.get("customer")) return showCustomer(tenant, "/" + encodeURIComponent(q.get("customer")), "id " + q.get("customer"));
  if (email) return showCustomer(tenant, "?email=" + encodeURIComponent(email), "email " + email);
  if (phone) return showCustomer(tenant, "?phone=" + encodeURIComponent(phone), "phone " + phone);
  $("customer").hidden = true;
  $("order").hidden = true;
  setState("idle", "Look a customer up by email or phone.");
}

// Shows the sign-in form (and nothing of the data) with `message`.
function signedOut(message, isError) {
  $("login").hidden = false;
  $("search").hidden = true;
  $("customer").hidden = true;
  $("order").hidden = true;
  setState("login", message, isError);
  $("token").focus();
}

// With a token: the tenants it may read, then what the address names.
async function enter() {
  if (!token()) {
    signedOut("Sign in with an operator token to read customer data (`storefold token new` makes one; `storefold dev` prints one).");
    return;
  }
  const q = new URLSearchParams(location.search);
  const res = await api("/v1/tenants");
  if (res.status === 401) {
    signedOut("The operator token was refused; sign in with a valid one.", true);
    return;
  }
  $("login").hidden = true;
  $("search").hidden = false;
  const list = (res.status === 200 && res.body && res.body.tenants) || [];
  const dl = $("tenants");
  clear(dl);
  for (const t of list) dl.append(el("option", { value: t }));
  if (!q.get("tenant") && list.length && !$("tenant").value) $("tenant").value = list[0];
  await route();
}

async function start() {
  tokenFromFragment();
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    $("token").value = "";
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    enter();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    signedOut("Signed out.");
  });
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const tenant = $("tenant").value.trim();
    const who = $("who").value.trim();
    const params = { tenant };
    params[who.includes("@") ? "email" : "phone"] = who;
    history.pushState(null, "", "?" + new URLSearchParams(params).toString());
    route();
  });
  window.addEventListener("popstate", () => (token() ? route() : signedOut("Sign in with an operator token.")));
  await enter();
}

start();
