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

/// What one unit of a product costs, from a decimal string in `currency`:
/// exact (no rounding: more decimals than the currency has, other than
/// trailing zeros, are refused) and not negative.
pub fn unit_cost(field: &str, amount: &str, currency: Currency) -> Result<Money, MapError> {
    let cost = Money::parse(amount.trim(), currency).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: money_reason(&e),
    })?;
    if cost.minor < 0 {
        return Err(MapError::InvalidField {
            field: field.to_string(),
            reason: "a cost is not negative".into(),
        });
    }
    Ok(cost)
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

    #[test]
    fn unit_costs_are_exact_and_not_negative() {
        let eur = Currency::from_code("EUR").unwrap();
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(unit_cost("cost", "12.50", eur), Ok(Money::new(1250, eur)));
        assert_eq!(unit_cost("cost", " 7 ", eur), Ok(Money::new(700, eur)));
        assert_eq!(unit_cost("cost", "1200", jpy), Ok(Money::new(1200, jpy)));
        // Trailing zeros lose nothing; a third significant decimal would.
        assert_eq!(unit_cost("cost", "3.100", eur), Ok(Money::new(310, eur)));
        let e = unit_cost("cost", "3.105", eur).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid field cost: more decimals than EUR allows (2)"
        );
        let e = unit_cost("cost", "-1.00", eur).unwrap_err();
        assert_eq!(e.to_string(), "invalid field cost: a cost is not negative");
        assert!(unit_cost("cost", "1e3", eur).is_err());
    }
}
