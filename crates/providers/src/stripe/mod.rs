//! stripe: not mapped yet (work in progress in this session).

use storefold_core::Envelope;
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest,
};

pub(crate) const HEADERS: &[&str] = &[];

pub(crate) fn verify(
    _creds: &Credentials,
    _req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    Err(VerifyError::Mismatch)
}

pub(crate) fn describe(_req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    Err(MapError::UnsupportedTopic("stripe".into()))
}

pub(crate) fn map(_ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    Err(MapError::UnsupportedTopic(input.topic.to_string()))
}

pub(crate) fn sign(
    _secret: &str,
    _topic: &str,
    _body: &[u8],
    _now: OffsetDateTime,
) -> Result<Signed, SignError> {
    Err(SignError::NotSigned("stripe"))
}
