//! `storefold erp load`: an ERP's inventory file (JSON lines) checked line by
//! line, then posted to the ingest's ERP feed in signed bodies of whole lines
//! that fit under the ingest's body limit.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use storefold_providers::{MapOptions, ProviderKind};
use storefold_runtime::config::Config;

use crate::feed_load::{Body, Feed};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ErpCommand {
    /// Check FILE (JSON lines: sku, at, unit_cost with currency, available,
    /// backorder, eta, item_id) line by line, then post it to the ingest's ERP
    /// feed in signed bodies of whole lines, each under the ingest's body
    /// limit. Nothing is posted when a line is wrong: it is named by its line
    /// number in FILE. Loading the same file again posts the same bodies, with
    /// the same idempotency ids: the processor skips them as duplicates. Exits
    /// 0 when every body was accepted (4 at the first that was not; the lines
    /// before it are in).
    Load(LoadArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Signing secret; defaults to the tenant's ERP secret in the configuration.
    #[arg(long, env = "STOREFOLD_ERP_SECRET", hide_env_values = true)]
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

pub(crate) async fn run(config: Option<&Config>, command: ErpCommand) -> Result<()> {
    let ErpCommand::Load(args) = command;
    let body = crate::read_input(&args.file)?;
    let shown = args.file.display().to_string();
    // The whole file through the ERP mapper first: an error names the line
    // (counted from 1, blank lines included) as it is in the file.
    let options = MapOptions::default();
    let feed = Feed {
        provider: ProviderKind::Erp,
        topic: "inventory",
        tenant: &args.tenant,
        config,
        shown: &shown,
    };
    let events = feed.check(&options, &body)?;
    let max = feed.max_bytes(args.max_bytes);
    let chunks = split_lines(&body, max).with_context(|| format!("{shown}: nothing was posted"))?;
    let secret = feed.secret(args.secret.as_ref())?;
    let base = feed.base(args.url.as_deref())?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{shown}: {} line(s) with data, in {} bod{}",
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

/// A body of whole lines of the file, and the file's line numbers it holds.
#[derive(Debug, PartialEq, Eq)]
struct Chunk {
    first: usize,
    last: usize,
    body: Vec<u8>,
}

/// Splits `body` into bodies of whole lines of at most `max` bytes each;
/// blank lines are left out. A line longer than `max` is an error naming it.
fn split_lines(body: &[u8], max: usize) -> Result<Vec<Chunk>> {
    let mut chunks: Vec<Chunk> = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let need = line.len() + 1;
        if need > max {
            bail!("line {n} alone is {need} bytes, more than the {max} a body may have");
        }
        match chunks.last_mut() {
            Some(c) if c.body.len() + need <= max => {
                c.body.extend_from_slice(line);
                c.body.push(b'\n');
                c.last = n;
            }
            _ => {
                let mut b = line.to_vec();
                b.push(b'\n');
                chunks.push(Chunk {
                    first: n,
                    last: n,
                    body: b,
                });
            }
        }
    }
    if chunks.is_empty() {
        bail!("no lines with data");
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_packed_whole_under_the_limit_and_blank_ones_dropped() {
        let body = b"{\"a\":1}\n\n{\"b\":22}\r\n{\"c\":333}\n";
        // 8, 9 and 10 bytes with their newline.
        let chunks = split_lines(body, 18).unwrap();
        assert_eq!(
            chunks,
            vec![
                Chunk {
                    first: 1,
                    last: 3,
                    body: b"{\"a\":1}\n{\"b\":22}\n".to_vec(),
                },
                Chunk {
                    first: 4,
                    last: 4,
                    body: b"{\"c\":333}\n".to_vec(),
                },
            ]
        );
        let one = split_lines(body, 1 << 20).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].body,
            b"{\"a\":1}\n{\"b\":22}\n{\"c\":333}\n".to_vec()
        );
    }

    #[test]
    fn a_line_over_the_limit_and_an_empty_file_are_refused() {
        let e = split_lines(b"{\"a\":1}\n{\"long\":\"xxxxxxxxxx\"}\n", 12).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2 alone is 22 bytes, more than the 12 a body may have"
        );
        assert_eq!(
            split_lines(b"\n \n", 10).unwrap_err().to_string(),
            "no lines with data"
        );
    }
}
