//! `storefold token new|hash`: operator API tokens for `[[operator.tokens]]`.

use anyhow::{Result, bail};
use storefold_runtime::config::valid_tenant_id;
use storefold_runtime::operator::{hash_token, new_token};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a new random operator token: prints the token once (it is stored
    /// nowhere) and the [[operator.tokens]] entry, with its SHA-256, to add to
    /// the configuration.
    New(NewArgs),
    /// Print the SHA-256 of a token read from standard input (one line), as
    /// [[operator.tokens]] sha256 holds it.
    Hash,
}

#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// Who or what holds the token (shown in logs, never the token).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// A tenant the token may read through the query API and the Inspector
    /// (repeatable).
    #[arg(long = "tenant", value_name = "ID", conflicts_with = "admin")]
    tenants: Vec<String>,
    /// The token reads every tenant and /metrics.
    #[arg(long)]
    admin: bool,
    /// The token may read /metrics (for a Prometheus scrape).
    #[arg(long)]
    metrics: bool,
}

pub(crate) fn run(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::New(args) => {
            let token = new_token();
            println!("{}", new_entry(&args, &token)?);
            Ok(())
        }
        TokenCommand::Hash => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let token = line.trim();
            if token.is_empty() {
                bail!("no token on standard input");
            }
            println!("{}", hash_token(token));
            Ok(())
        }
    }
}

/// What `token new` prints for `token`.
fn new_entry(args: &NewArgs, token: &str) -> Result<String> {
    if args.name.trim().is_empty() || args.name.contains(['"', '\\', '\n']) {
        bail!("--name must be a non-empty name without quotes, backslashes or line breaks");
    }
    if !args.admin && !args.metrics && args.tenants.is_empty() {
        bail!("give the token a scope: --tenant ID (repeatable), --admin or --metrics");
    }
    if let Some(bad) = args.tenants.iter().find(|t| !valid_tenant_id(t)) {
        bail!("--tenant {bad:?} is not a tenant id (a-z, 0-9, '_' and '-')");
    }
    let mut entry = format!(
        "[[operator.tokens]]\nname = \"{}\"\nsha256 = \"{}\"\n",
        args.name,
        hash_token(token)
    );
    if args.admin {
        entry.push_str("admin = true\n");
    }
    if !args.tenants.is_empty() {
        let list: Vec<String> = args.tenants.iter().map(|t| format!("\"{t}\"")).collect();
        entry.push_str(&format!("tenants = [{}]\n", list.join(", ")));
    }
    if args.metrics {
        entry.push_str("metrics = true\n");
    }
    Ok(format!(
        "Token (shown only now; give it to {name} and store it as a secret):\n\n  {token}\n\n\
         Add this to the configuration (it holds only the token's SHA-256):\n\n{entry}\n\
         Requests send it as: Authorization: Bearer <token>",
        name = args.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefold_runtime::config::Config;

    fn args(tenants: &[&str], admin: bool, metrics: bool) -> NewArgs {
        NewArgs {
            name: "support".into(),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            admin,
            metrics,
        }
    }

    #[test]
    fn the_printed_entry_is_a_configuration_that_accepts_the_token() {
        let token = new_token();
        let out = new_entry(&args(&["acme"], false, false), &token).unwrap();
        assert!(out.contains(&token));
        let entry = &out[out.find("[[operator.tokens]]").unwrap()..out.find("Requests").unwrap()];
        assert!(
            !entry.contains(&token),
            "only the hash goes to the configuration"
        );
        let toml = format!("[tenants.acme.providers.shopify]\nsecret = \"s\"\n{entry}");
        let config = Config::from_toml_str(&toml, Vec::new()).expect("valid configuration");
        let access = storefold_runtime::operator::Access::new(&config.operator);
        let caller = access.authenticate(&token).expect("the token is accepted");
        assert_eq!(caller.name, "support");
        assert!(caller.scope.may_read_tenant("acme") && !caller.scope.may_read_metrics());
    }

    #[test]
    fn a_token_needs_a_scope_and_valid_tenants() {
        assert!(new_entry(&args(&[], false, false), "t").is_err());
        assert!(new_entry(&args(&["Not Valid"], false, false), "t").is_err());
        let admin = new_entry(&args(&[], true, false), "t").unwrap();
        assert!(admin.contains("admin = true"));
        let prom = new_entry(&args(&[], false, true), "t").unwrap();
        assert!(prom.contains("metrics = true"));
    }
}
