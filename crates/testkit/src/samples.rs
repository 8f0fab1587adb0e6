//! One webhook per provider, signed as the provider signs it, and a tenant
//! configuration holding the matching secrets.
//!
//! The bodies are storefold's own provider fixtures (crates/providers/src/*/fixtures);
//! the secrets are test values, never real ones. PayPal's key pair and self-signed
//! certificate live in `crates/testkit/fixtures/` and are for tests only.

use storefold_providers::{ProviderKind, SignError};
use time::OffsetDateTime;

/// The PayPal test certificate (what a tenant pins) and its private key (what signs
/// test requests).
pub const PAYPAL_TEST_CERT: &str = include_str!("../fixtures/paypal-test-cert.pem");
pub const PAYPAL_TEST_KEY: &str = include_str!("../fixtures/paypal-test-key.pem");
pub const PAYPAL_WEBHOOK_ID: &str = "WH-TESTKIT-0001";

/// The origin test tenants allow for browser touches.
pub const SHOP_ORIGIN: &str = "https://shop.test";

/// One provider request body and the topic it is sent under.
#[derive(Clone, Debug)]
pub struct Sample {
    pub provider: ProviderKind,
    pub topic: &'static str,
    pub body: Vec<u8>,
}

macro_rules! fixture {
    ($p:literal, $f:literal) => {
        include_bytes!(concat!("../../providers/src/", $p, "/fixtures/", $f)).as_slice()
    };
}

/// A representative webhook of `provider` (its [`ProviderKind::example`]; for
/// `collect`: a browser touch, undated).
pub fn sample(provider: ProviderKind) -> Sample {
    let example = provider.example();
    let (topic, body) = (example.topic, example.body);
    let body = if provider == ProviderKind::Collect {
        // Undated, so it is taken as received now: the ingest refuses touches
        // dated outside a window of their receipt, and the fixture is from 2025.
        let mut touch: serde_json::Value =
            serde_json::from_slice(body).expect("the collect fixture is JSON");
        if let Some(fields) = touch.as_object_mut() {
            fields.remove("at");
        }
        serde_json::to_vec(&touch).expect("JSON")
    } else {
        body.to_vec()
    };
    Sample {
        provider,
        topic,
        body,
    }
}

/// A Shopify `orders/create` for order `n` of `email`: distinct ids and content, so
/// every `n` is a different event, placed by a Shopify customer of its own (its
/// id and email; the fixture's customer id would link every buyer's email into
/// one customer, as a store's customer id does).
pub fn shopify_order(n: u64, email: &str) -> Sample {
    let mut v: serde_json::Value =
        serde_json::from_slice(fixture!("shopify", "orders_create.json")).expect("fixture is JSON");
    v["id"] = serde_json::json!(820_982_911_946_154_508u64 + n);
    v["order_number"] = serde_json::json!(5000 + n);
    v["name"] = serde_json::json!(format!("#{}", 5000 + n));
    v["email"] = serde_json::json!(email);
    v["customer"]["id"] = serde_json::json!(8_300_000_000u64 + n);
    v["customer"]["email"] = serde_json::json!(email);
    Sample {
        provider: ProviderKind::Shopify,
        topic: "orders/create",
        body: serde_json::to_vec(&v).expect("serialise"),
    }
}

/// The secret a test tenant verifies `provider` with (for PayPal: the certificate).
pub fn verify_secret(provider: ProviderKind) -> String {
    match provider {
        // Adyen's HMAC key is hex; PayPal verifies with a certificate; collect is
        // unsigned. Every other scheme takes any string.
        ProviderKind::Adyen => {
            "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056".into()
        }
        ProviderKind::Paypal => PAYPAL_TEST_CERT.into(),
        ProviderKind::Collect => String::new(),
        other => format!("testkit-{}-secret", other.name()),
    }
}

/// What `ProviderKind::sign` takes for a test tenant's `provider`.
pub fn signing_secret(provider: ProviderKind) -> String {
    match provider {
        ProviderKind::Paypal => format!("webhook_id: {PAYPAL_WEBHOOK_ID}\n{PAYPAL_TEST_KEY}"),
        other => verify_secret(other),
    }
}

/// A request ready to send: path (with the `?token=` of URL-token providers),
/// headers and body.
#[derive(Clone, Debug)]
pub struct SignedRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// `sample` for `tenant`, signed with the test secret at `now`. Touches get the
/// tenant's allowed origin and go to the collect endpoint.
pub fn signed(tenant: &str, sample: &Sample, now: OffsetDateTime) -> SignedRequest {
    signed_with(tenant, sample, &signing_secret(sample.provider), now).expect("test secrets sign")
}

/// `sample` signed with `secret` (which may be wrong, for negative tests).
pub fn signed_with(
    tenant: &str,
    sample: &Sample,
    secret: &str,
    now: OffsetDateTime,
) -> Result<SignedRequest, SignError> {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if sample.provider == ProviderKind::Collect {
        headers.push(("origin".into(), SHOP_ORIGIN.into()));
        return Ok(SignedRequest {
            path: format!("/v1/collect/{tenant}"),
            headers,
            body: sample.body.clone(),
        });
    }
    let signed = sample
        .provider
        .sign(secret, sample.topic, &sample.body, now)?;
    headers.extend(signed.headers);
    Ok(SignedRequest {
        path: storefold_providers::webhook_path(
            tenant,
            sample.provider.name(),
            signed.url_token.as_deref(),
        ),
        headers,
        body: signed.body,
    })
}

/// `[tenants.<tenant>]` with every provider's test secret and the shop origin.
pub fn tenant_toml(tenant: &str) -> String {
    let mut s = format!("[tenants.{tenant}]\ncollect_origins = [\"{SHOP_ORIGIN}\"]\n");
    for p in ProviderKind::WEBHOOK {
        s.push_str(&format!("[tenants.{tenant}.providers.{}]\n", p.name()));
        s.push_str(&format!("secret = '''{}'''\n", verify_secret(p)));
        if p == ProviderKind::Paypal {
            s.push_str(&format!("webhook_id = \"{PAYPAL_WEBHOOK_ID}\"\n"));
            s.push_str(&format!("signing_key = '''{PAYPAL_TEST_KEY}'''\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use storefold_providers::{Credentials, Headers, WebhookRequest};

    use super::*;

    /// The test tenant's secrets (generic for most schemes) verify what the
    /// samples are signed with, for every registered provider.
    #[test]
    fn every_webhook_sample_verifies_with_the_test_tenant_secret() {
        let now = OffsetDateTime::now_utc();
        for p in ProviderKind::WEBHOOK {
            let s = sample(p);
            let signed = p
                .sign(&signing_secret(p), s.topic, &s.body, now)
                .unwrap_or_else(|e| panic!("{p}: {e}"));
            let headers = Headers::from_pairs(signed.headers.clone());
            let creds = Credentials {
                secret: verify_secret(p),
                webhook_id: (p == ProviderKind::Paypal).then(|| PAYPAL_WEBHOOK_ID.to_string()),
            };
            let req = WebhookRequest {
                headers: &headers,
                body: &signed.body,
                url_token: signed.url_token.as_deref(),
            };
            assert_eq!(p.verify(&creds, &req, now), Ok(()), "{p}");
            assert_eq!(
                p.describe(&req).map(|i| i.topic).as_deref(),
                Ok(s.topic),
                "{p}"
            );
        }
    }
}
