//! The summary of the folded sample: the Customer 360 of every sample
//! customer from the query API, printed as a table and checked against what
//! the sample should give.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result, bail};
use storefold_codec::CustomerView;

use super::Access;
use crate::dev_sample::{Expected, Sample, TENANT, format_money};

/// Net revenue per currency of a Customer 360.
fn net_revenue(view: &CustomerView) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for r in &view.revenue {
        *out.entry(r.currency.clone()).or_default() += r.net;
    }
    out
}

/// Net amounts per currency, as people write them, joined by ` + ` (`-` when
/// there are none).
fn money_list(net: &BTreeMap<String, i64>) -> String {
    if net.is_empty() {
        return "-".into();
    }
    net.iter()
        .map(|(c, m)| format_money(*m, c))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Queries the processor for every sample customer and prints the table, then
/// checks it against what the sample should give.
pub(super) async fn summarise(
    client: &reqwest::Client,
    access: &Access,
    sample: &Sample,
) -> Result<()> {
    let base = &access.base;
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut merges: Vec<String> = Vec::new();
    for exp in &sample.customers {
        // The sample's emails are plain ASCII (letters, dots, one @): no escaping.
        let url = format!("{base}/v1/tenants/{TENANT}/customers?email={}", exp.email);
        let resp = client
            .get(&url)
            .bearer_auth(&access.token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            wrong.push(format!("{}: HTTP {}", exp.email, resp.status()));
            continue;
        }
        let doc = resp.text().await.context("a Customer 360 document")?;
        // The query API answers with the Customer 360 JSON document (the
        // projection's `doc`); read it as the typed view the projections carry.
        let Some(view) = CustomerView::from_doc(&doc) else {
            wrong.push(format!("{}: the answer is not a Customer 360", exp.email));
            continue;
        };
        let net = net_revenue(&view);
        let orders = u64::try_from(view.orders_count).unwrap_or(0);
        let open = u64::try_from(view.open_tickets).unwrap_or(0);
        let segments: Vec<&str> = view.segments.iter().map(String::as_str).collect();
        let merged = view.merged.len();
        if merged > 0 {
            merges.push(format!("{} ({merged} merged in)", exp.name));
        }
        check(exp, orders, &net, open, &mut wrong);
        rows.push([
            format!("{} <{}>", exp.name, exp.email),
            orders.to_string(),
            money_list(&net),
            open.to_string(),
            if segments.is_empty() {
                "-".into()
            } else {
                segments.join(", ")
            },
        ]);
    }
    let header = [
        "customer",
        "orders",
        "net revenue",
        "open tickets",
        "segments",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| -> String {
        let mut s = String::from(" ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            if i == 1 || i == 2 || i == 3 {
                s.push_str(&format!(" {}{cell} ", " ".repeat(pad)));
            } else {
                s.push_str(&format!(" {cell}{} ", " ".repeat(pad)));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Customer 360 of tenant {TENANT} ({} customers):",
        rows.len()
    )?;
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line([
                r[0].as_str(),
                r[1].as_str(),
                r[2].as_str(),
                r[3].as_str(),
                r[4].as_str()
            ])
        )?;
    }
    if !merges.is_empty() {
        writeln!(out, "\nIdentity merges: {}", merges.join(", "))?;
    }
    let first = sample
        .customers
        .first()
        .map(|c| c.email.as_str())
        .unwrap_or("");
    let urls = [
        (
            format!("{base}/ui#token={}", access.token),
            "the Inspector (signed in with the dev token)",
        ),
        (
            format!("{base}/v1/tenants/{TENANT}/customers?email={first}"),
            "a Customer 360 (query API)",
        ),
        (
            format!("{base}/v1/tenants/{TENANT}/orders/shopify:5000000001001"),
            "an order with its ledger",
        ),
        (format!("{base}/metrics"), "Prometheus metrics"),
    ];
    let width = urls.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    writeln!(out, "\nOpen:")?;
    for (url, what) in &urls {
        writeln!(out, "  {url:<width$}  {what}")?;
    }
    writeln!(
        out,
        "The query API and /metrics answer 401 without the token, e.g.:\n  curl -H 'Authorization: Bearer {}' '{base}/v1/tenants'",
        access.token
    )?;
    writeln!(out)?;
    out.flush()?;
    if wrong.is_empty() {
        Ok(())
    } else {
        bail!(
            "the folded sample differs from what it should give:\n  {}",
            wrong.join("\n  ")
        )
    }
}

/// Adds to `wrong` what differs between a folded customer and `exp`.
fn check(
    exp: &Expected,
    orders: u64,
    net: &BTreeMap<String, i64>,
    open: u64,
    wrong: &mut Vec<String>,
) {
    let want: BTreeMap<String, i64> = exp.net.iter().map(|(c, m)| (c.to_string(), *m)).collect();
    if orders != exp.orders || *net != want || open != exp.open_tickets {
        wrong.push(format!(
            "{}: {orders} orders, {}, {open} open tickets; expected {} orders, {}, {} open tickets",
            exp.email,
            money_list(net),
            exp.orders,
            money_list(&want),
            exp.open_tickets
        ));
    }
}
