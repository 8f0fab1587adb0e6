//! Money as integer minor units of an ISO 4217 currency.
//!
//! Provider amounts arrive as decimal strings ("409.94") or as integers that are
//! already minor units (Stripe, Adyen). Both end up here as `i64` minor units; a
//! decimal string is parsed digit by digit, never through a float, and is refused
//! when it carries more precision than the currency has.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code, upper case, known to have a fixed exponent.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Why a money value could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency code {0:?}")]
    UnknownCurrency(String),
    #[error("invalid amount {0:?}: expected digits with an optional '.' and fraction")]
    Syntax(String),
    #[error("amount {amount:?} has more decimals than {currency} allows ({exponent})")]
    Precision {
        amount: String,
        currency: String,
        exponent: u8,
    },
    #[error("amount {0:?} is out of range")]
    Overflow(String),
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(String, String),
}

impl Currency {
    /// Looks a code up in the ISO 4217 table (case-insensitive).
    pub fn from_code(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        let iso = iso_currency::Currency::from_code(&upper)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))?;
        // Currencies without a minor unit (XAU, XDR, ...) are not money a store takes.
        let exponent = iso
            .exponent()
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))?;
        let bytes = upper.as_bytes();
        if bytes.len() != 3 {
            return Err(MoneyError::UnknownCurrency(code.to_string()));
        }
        Ok(Self {
            code: [bytes[0], bytes[1], bytes[2]],
            exponent: exponent as u8,
        })
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // The bytes came from an ASCII str.
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// Number of minor-unit digits (JPY 0, USD 2, KWD 3).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::from_code(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount in minor units of one currency.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units (cents for USD, yen for JPY, fils for KWD).
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// Parses an exact decimal string in the given currency: `"409.94"` in USD is
    /// 40994 minor units. Exponents (`"1e2"`), signs other than a leading `-`,
    /// whitespace inside, and non-zero digits beyond the currency's precision are
    /// refused. Trailing zeros beyond it are accepted (`"1000.00"` JPY is 1000).
    pub fn parse(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        let minor = parse_minor(amount, currency.exponent(), currency.code())?;
        Ok(Self::new(minor, currency))
    }

    /// Parses with a currency code.
    pub fn parse_code(amount: &str, code: &str) -> Result<Self, MoneyError> {
        Self::parse(amount, Currency::from_code(code)?)
    }

    /// Adds two amounts of the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(
                self.currency.to_string(),
                other.currency.to_string(),
            ));
        }
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or_else(|| MoneyError::Overflow(format!("{self} + {other}")))?;
        Ok(Money::new(minor, self.currency))
    }

    /// Subtracts an amount of the same currency.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.checked_add(Money::new(-other.minor, other.currency))
    }

    /// The decimal form, e.g. `409.94`, `1000` (JPY), `1.250` (KWD).
    pub fn to_decimal_string(&self) -> String {
        decimal_string(self.minor, self.currency.exponent() as u32)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

fn parse_minor(amount: &str, exponent: u8, code: &str) -> Result<i64, MoneyError> {
    let syntax = || MoneyError::Syntax(amount.to_string());
    let (neg, digits) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, amount),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let frac = frac_part.unwrap_or("");
    if frac_part.is_some() && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
        return Err(syntax());
    }
    let exp = exponent as usize;
    let (kept, extra) = if frac.len() > exp {
        frac.split_at(exp)
    } else {
        (frac, "")
    };
    if extra.bytes().any(|b| b != b'0') {
        return Err(MoneyError::Precision {
            amount: amount.to_string(),
            currency: code.to_string(),
            exponent,
        });
    }
    let overflow = || MoneyError::Overflow(amount.to_string());
    let mut value: i64 = 0;
    for b in int_part.bytes().chain(kept.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    for _ in kept.len()..exp {
        value = value.checked_mul(10).ok_or_else(overflow)?;
    }
    Ok(if neg { -value } else { value })
}

/// Amounts per currency. Different currencies are kept apart and never summed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyBag(pub BTreeMap<Currency, i64>);

impl MoneyBag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an amount to its currency's total (saturating: a bag never panics).
    pub fn add(&mut self, m: Money) {
        let slot = self.0.entry(m.currency).or_insert(0);
        *slot = slot.saturating_add(m.minor);
    }

    pub fn get(&self, currency: Currency) -> i64 {
        self.0.get(&currency).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|v| *v == 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = Money> + '_ {
        self.0.iter().map(|(c, m)| Money::new(*m, *c))
    }

    /// Per-currency difference `self - other`.
    pub fn minus(&self, other: &MoneyBag) -> MoneyBag {
        let mut out = self.clone();
        for (c, m) in &other.0 {
            let slot = out.0.entry(*c).or_insert(0);
            *slot = slot.saturating_sub(*m);
        }
        out
    }
}

/// `minor` units with `exponent` decimals, exactly, without floats:
/// `decimal_string(-1230, 2)` is `-12.30`, `decimal_string(1000, 0)` is `1000`.
pub fn decimal_string(minor: i64, exponent: u32) -> String {
    let mut out = String::new();
    if minor < 0 {
        out.push('-');
    }
    let abs = minor.unsigned_abs();
    if exponent == 0 {
        out.push_str(&abs.to_string());
        return out;
    }
    let scale = 10u64.pow(exponent);
    out.push_str(&format!(
        "{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exponent as usize
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::from_code("USD").unwrap()
    }

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(Currency::from_code("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::from_code("usd").unwrap().exponent(), 2);
        assert_eq!(Currency::from_code("KWD").unwrap().exponent(), 3);
        assert!(Currency::from_code("ZZZ").is_err());
    }

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Money::parse("409.94", usd()).unwrap().minor, 40994);
        assert_eq!(Money::parse("0.5", usd()).unwrap().minor, 50);
        assert_eq!(Money::parse("-12.30", usd()).unwrap().minor, -1230);
        assert_eq!(Money::parse_code("1000", "JPY").unwrap().minor, 1000);
        assert_eq!(Money::parse_code("1000.00", "JPY").unwrap().minor, 1000);
        assert_eq!(Money::parse_code("1.25", "KWD").unwrap().minor, 1250);
        assert_eq!(
            Money::parse_code("1.250", "KWD")
                .unwrap()
                .to_decimal_string(),
            "1.250"
        );
    }

    #[test]
    fn point_one_plus_point_two_is_exact() {
        let a = Money::parse("0.1", usd()).unwrap();
        let b = Money::parse("0.2", usd()).unwrap();
        assert_eq!(
            a.checked_add(b).unwrap(),
            Money::parse("0.3", usd()).unwrap()
        );
    }

    #[test]
    fn rejects_what_is_not_a_plain_decimal() {
        for bad in [
            "1e2", "", ".5", "5.", "+1", "1,00", " 1", "1.2.3", "0x10", "NaN", "--1",
        ] {
            assert!(
                Money::parse(bad, usd()).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(matches!(
            Money::parse("1.005", usd()),
            Err(MoneyError::Precision { .. })
        ));
        assert!(matches!(
            Money::parse_code("10.5", "JPY"),
            Err(MoneyError::Precision { .. })
        ));
        assert!(matches!(
            Money::parse("99999999999999999999", usd()),
            Err(MoneyError::Overflow(_))
        ));
    }

    #[test]
    fn different_currencies_never_add() {
        let a = Money::parse("1", usd()).unwrap();
        let b = Money::parse_code("1", "EUR").unwrap();
        assert!(matches!(
            a.checked_add(b),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        let mut bag = MoneyBag::new();
        bag.add(a);
        bag.add(b);
        bag.add(a);
        assert_eq!(bag.get(usd()), 200);
        assert_eq!(bag.get(Currency::from_code("EUR").unwrap()), 100);
    }

    #[test]
    fn serde_uses_codes() {
        let m = Money::parse_code("3.10", "EUR").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"minor":310,"currency":"EUR"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
    }
}
