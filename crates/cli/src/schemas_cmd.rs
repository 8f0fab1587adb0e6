//! `storefold schemas check`: every schema parses and stays backward compatible
//! with its previous committed version.
//!
//! The previous version of `<dir>/<file>` is `git show HEAD:<file>`, run in `dir`, so
//! the check works for any directory inside the repository. A file not in HEAD is new.
//! Without git, or outside a repository, the schemas are only parsed, and the output
//! says so.

// The command's output is its result.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use storefold_codec::{SchemaOutcome, SchemaReport, check_dir};

/// Where previous versions come from.
enum Baseline {
    /// HEAD of the repository `dir` is in.
    Head,
    /// No previous versions: why (no git, not a repository, no commit yet).
    None(String),
}

/// Runs the check over `dir` (normally `schemas/`), printing one line per schema.
pub(crate) fn check(dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    let baseline = baseline(dir);
    if let Baseline::None(why) = &baseline {
        println!("note: {why}; checking that the schemas parse, without compatibility checks");
    }

    let reports = check_dir(dir, |file| match baseline {
        Baseline::Head => git_show_head(dir, file),
        Baseline::None(_) => None,
    })
    .with_context(|| format!("checking the schemas in {}", dir.display()))?;

    let mut failures = 0usize;
    for report in &reports {
        print_report(report, &baseline);
        if !report.is_ok() {
            failures += 1;
        }
    }

    // A schema that HEAD has and the directory lost breaks every reader of its topic.
    if let Baseline::Head = baseline {
        let present: Vec<&str> = reports.iter().map(|r| r.file_name.as_str()).collect();
        for removed in head_schemas(dir)?
            .iter()
            .filter(|f| !present.contains(&f.as_str()))
        {
            println!("FAIL {removed}: removed (it is in HEAD)");
            failures += 1;
        }
    }

    // In a fresh clone the working tree equals HEAD, so also check every committed
    // change of every schema against the version before it: a commit that broke a
    // contract fails here even after it landed.
    if let Baseline::Head = baseline {
        for report in &reports {
            failures += check_history(dir, &report.file_name);
        }
    }

    if failures > 0 {
        bail!(
            "{failures} of the schemas in {} {} not backward compatible with HEAD \
             (a reader with the new schema must read data written with the old one: \
             give new fields a default, keep types or use Avro's promotions, rename only \
             with an alias)",
            dir.display(),
            if failures == 1 { "is" } else { "are" }
        );
    }
    Ok(())
}

fn print_report(report: &SchemaReport, baseline: &Baseline) {
    let name = &report.file_name;
    match (&report.outcome, baseline) {
        (SchemaOutcome::New, Baseline::Head) => println!("new {name}"),
        (SchemaOutcome::New, Baseline::None(_)) => println!("ok  {name} (parses)"),
        (SchemaOutcome::Unchanged, _) => println!("ok  {name} (unchanged since HEAD)"),
        (SchemaOutcome::Compatible, _) => println!("ok  {name} (compatible with HEAD)"),
        (SchemaOutcome::Failed(err), _) => println!("FAIL {name}: {err}"),
    }
}

/// Checks each committed version of `file` against the one committed before it;
/// returns the number of failures.
fn check_history(dir: &Path, file: &str) -> usize {
    let Ok(out) = git(dir, &["log", "--format=%H", "--", &format!("./{file}")]) else {
        return 0;
    };
    let commits: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let versions: Vec<(String, String)> = commits
        .iter()
        .filter_map(|c| {
            let out = git(dir, &["show", &format!("{c}:./{file}")]).ok()?;
            out.status
                .success()
                .then(|| (c.clone(), String::from_utf8_lossy(&out.stdout).into_owned()))
        })
        .collect();
    let mut failures = 0;
    // Newest first: each version must read what the one before it wrote.
    for pair in versions.windows(2) {
        let (newer_commit, newer) = &pair[0];
        let (older_commit, older) = &pair[1];
        if let Err(e) = storefold_codec::check_backward(older, newer) {
            println!(
                "FAIL {file}: the version of commit {} cannot read data written with commit {}: {e}",
                &newer_commit[..newer_commit.len().min(10)],
                &older_commit[..older_commit.len().min(10)]
            );
            failures += 1;
        }
    }
    if failures == 0 && versions.len() > 1 {
        println!(
            "ok  {file} (history: {} committed versions, each backward compatible with the one before)",
            versions.len()
        );
    }
    failures
}

/// Whether `dir` is in a git repository with a HEAD commit.
fn baseline(dir: &Path) -> Baseline {
    let inside = match git(dir, &["rev-parse", "--is-inside-work-tree"]) {
        Err(e) => return Baseline::None(format!("git is not available ({e})")),
        Ok(out) => out,
    };
    if !inside.status.success() || String::from_utf8_lossy(&inside.stdout).trim() != "true" {
        return Baseline::None(format!("{} is not in a git work tree", dir.display()));
    }
    match git(dir, &["rev-parse", "--verify", "--quiet", "HEAD"]) {
        Ok(out) if out.status.success() => Baseline::Head,
        _ => Baseline::None("the repository has no commit yet".to_owned()),
    }
}

/// The file's content in HEAD, `None` when HEAD does not have it.
fn git_show_head(dir: &Path, file: &str) -> Option<String> {
    // `HEAD:./x` is resolved relative to the working directory, i.e. `dir`.
    let out = git(dir, &["show", &format!("HEAD:./{file}")]).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `*.avsc` files of `dir` in HEAD.
fn head_schemas(dir: &Path) -> anyhow::Result<Vec<String>> {
    let out = git(dir, &["ls-tree", "--name-only", "HEAD", "./"])
        .context("listing the schemas in HEAD")?;
    anyhow::ensure!(
        out.status.success(),
        "git ls-tree failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| Path::new(line).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".avsc"))
        .collect())
}

fn git(dir: &Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("git").arg("-C").arg(dir).args(args).output()
}
