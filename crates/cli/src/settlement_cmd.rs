//! `storefold settlement load`: a payment provider's settlement report (CSV)
//! checked row by row, then posted to the ingest's settlement feed in signed
//! bodies of whole rows, each repeating the header line, that fit under the
//! ingest's body limit.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use storefold_providers::settlement::{ADYEN_SETTLEMENT_DETAILS, STRIPE_PAYOUT_RECONCILIATION};
use storefold_providers::{MapOptions, ProviderKind};
use storefold_runtime::config::Config;

use crate::feed_load::{Body, Feed};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SettlementCommand {
    /// Check FILE (a settlement report as the provider's dashboard downloads
    /// it, in the format --report names) row by row, then post it to the
    /// ingest's settlement feed in signed bodies of whole rows, each with the
    /// header line and under the ingest's body limit. Nothing is posted when a
    /// row is wrong: it is named by its line in FILE and the column. Each
    /// movement's event id is the provider's own id of it, so loading the
    /// same report, or one that overlaps it, again folds nothing twice. Exits
    /// 0 when every body was accepted (4 at the first that was not; the rows
    /// before it are in).
    Load(LoadArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// The report's format.
    #[arg(long, value_parser = [STRIPE_PAYOUT_RECONCILIATION, ADYEN_SETTLEMENT_DETAILS])]
    report: String,
    /// Signing secret; defaults to the tenant's settlement secret in the
    /// configuration.
    #[arg(long, env = "STOREFOLD_SETTLEMENT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Base URL of the ingest; defaults to http://<ingest.listen>.
    #[arg(long)]
    url: Option<String>,
    /// Largest body to post, in bytes; defaults to the configuration's
    /// ingest.max_body_bytes (1 MiB without a configuration).
    #[arg(long)]
    max_bytes: Option<usize>,
    /// The file (`-` for standard input).
    file: PathBuf,
}

pub(crate) async fn run(config: Option<&Config>, command: SettlementCommand) -> Result<()> {
    let SettlementCommand::Load(args) = command;
    let body = crate::read_input(&args.file)?;
    let shown = args.file.display().to_string();
    // The whole file through the settlement mapper first, with the tenant's
    // payment options as the processor will read it: an error names the line
    // as it is in the file.
    let options = match config.and_then(|c| c.tenants.get(&args.tenant)) {
        Some(t) => t
            .map_options()
            .map_err(|e| anyhow!("tenants.{}.{}: {}", args.tenant, e.key, e.message))?,
        None => MapOptions::default(),
    };
    let feed = Feed {
        provider: ProviderKind::Settlement,
        topic: &args.report,
        tenant: &args.tenant,
        config,
        shown: &shown,
    };
    let events = feed.check(&options, &body)?;
    let max = feed.max_bytes(args.max_bytes);
    let chunks = split_rows(&body, max).with_context(|| format!("{shown}: nothing was posted"))?;
    let secret = feed.secret(args.secret.as_ref())?;
    let base = feed.base(args.url.as_deref())?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{shown}: {} row(s), {} event(s), in {} bod{}",
            chunks.iter().map(|c| c.rows).sum::<usize>(),
            events.len(),
            chunks.len(),
            if chunks.len() == 1 { "y" } else { "ies" }
        )?;
    }
    let bodies = chunks.iter().map(|c| Body {
        first: c.first,
        last: c.last,
        bytes: &c.body,
    });
    feed.post_all(&secret, &base, bodies).await
}

/// A body of the header line and whole rows of the file, and the file's
/// lines it holds.
#[derive(Debug, PartialEq, Eq)]
struct Chunk {
    first: usize,
    last: usize,
    rows: usize,
    body: Vec<u8>,
}

/// Splits a report into bodies of at most `max` bytes: the header line, then
/// as many whole rows as fit (a row whose quoted cell holds a line break is
/// one row); blank lines are left out. A row that does not fit with the
/// header alone is an error naming it.
fn split_rows(body: &[u8], max: usize) -> Result<Vec<Chunk>> {
    let spans = storefold_providers::settlement::row_spans(body)?;
    let Some((header, rows)) = spans.split_first() else {
        bail!("no header line");
    };
    let with_newline = |range: std::ops::Range<usize>| {
        let mut b = body[range].to_vec();
        if !b.ends_with(b"\n") {
            b.push(b'\n');
        }
        b
    };
    let head = with_newline(header.bytes.clone());
    let mut chunks: Vec<Chunk> = Vec::new();
    for row in rows {
        let bytes = with_newline(row.bytes.clone());
        if head.len() + bytes.len() > max {
            bail!(
                "line {} with the header line is {} bytes, more than the {max} a body may have",
                row.first_line,
                head.len() + bytes.len()
            );
        }
        match chunks.last_mut() {
            Some(c) if c.body.len() + bytes.len() <= max => {
                c.body.extend_from_slice(&bytes);
                c.last = row.last_line;
                c.rows += 1;
            }
            _ => {
                let mut b = head.clone();
                b.extend_from_slice(&bytes);
                chunks.push(Chunk {
                    first: row.first_line,
                    last: row.last_line,
                    rows: 1,
                    body: b,
                });
            }
        }
    }
    if chunks.is_empty() {
        bail!("no rows under the header line");
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_packed_whole_with_the_header_under_the_limit() {
        // Header 4 bytes; rows 4, 9 (two lines) and 4 bytes with their line breaks.
        let body = b"a,b\n1,2\n\n\"x\ny\",3\r\n5,6";
        let chunks = split_rows(body, 17).unwrap();
        assert_eq!(
            chunks,
            vec![
                Chunk {
                    first: 2,
                    last: 5,
                    rows: 2,
                    body: b"a,b\n1,2\n\"x\ny\",3\r\n".to_vec(),
                },
                Chunk {
                    first: 6,
                    last: 6,
                    rows: 1,
                    body: b"a,b\n5,6\n".to_vec(),
                },
            ]
        );
        let one = split_rows(body, 1 << 20).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].body, b"a,b\n1,2\n\"x\ny\",3\r\n5,6\n".to_vec());
    }

    #[test]
    fn a_row_over_the_limit_and_a_report_without_rows_are_refused() {
        let e = split_rows(b"a,b\n1,2\n10000,20000\n", 12).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3 with the header line is 16 bytes, more than the 12 a body may have"
        );
        assert_eq!(
            split_rows(b"a,b\n\n", 100).unwrap_err().to_string(),
            "no rows under the header line"
        );
        assert_eq!(
            split_rows(b"\n \n", 100).unwrap_err().to_string(),
            "no header line"
        );
    }
}
