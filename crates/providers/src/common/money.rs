//! Amounts and currency codes of a payload as [`Money`], with errors that name
//! the field and never the amount.

use storefold_core::money::Currency;
use storefold_core::{Money, MoneyError};

use crate::MapError;

/// Why an amount or currency could not be read, without the amount itself.
pub fn money_reason(e: &MoneyError) -> String {
    match e {
        MoneyError::UnknownCurrency(_) => "unknown currency code".into(),
        MoneyError::Syntax(_) => {
            "not a decimal amount (digits with an optional '.' and fraction)".into()
        }
        MoneyError::Precision {
            currency, exponent, ..
        } => format!("more decimals than {currency} allows ({exponent})"),
        MoneyError::Overflow(_) => "amount out of range".into(),
        MoneyError::CurrencyMismatch(a, b) => format!("cannot combine {a} with {b}"),
    }
}

/// A decimal money string in a currency code, naming the field on error.
pub fn money(field: &str, amount: &str, currency: &str) -> Result<Money, MapError> {
    let c = currency_of(field, currency)?;
    Money::parse(amount, c).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: money_reason(&e),
    })
}

/// Minor units (Stripe, Adyen) in a currency code.
pub fn money_minor(field: &str, minor: i64, currency: &str) -> Result<Money, MapError> {
    Ok(Money::new(minor, currency_of(field, currency)?))
}

/// A currency code, naming the field on error.
pub fn currency_of(field: &str, code: &str) -> Result<Currency, MapError> {
    Currency::from_code(code).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: money_reason(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "jane.doe@example.com";

    #[test]
    fn money_errors_hold_no_amount() {
        let e = money("total_price", "12,34.5jane@example.com", "EUR").unwrap_err();
        assert!(!e.to_string().contains("jane"), "{e}");
        let e = currency_of("currency", "jane@example.com").unwrap_err();
        assert!(!e.to_string().contains("jane"), "{e}");
        let e = MapError::from(MoneyError::Syntax(EMAIL.into()));
        assert!(!e.to_string().contains(EMAIL), "{e}");
    }
}
