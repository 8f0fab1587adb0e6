//! Exchange rates an operator supplies, and the conversion policy of the
//! reporting currency (see `docs/books.md`).
//!
//! A rate is an exact decimal (never a float): `1 from = rate to`. An amount
//! converts at the rate of its own date, else the newest earlier rate no older
//! than `max_age_days`; a pair found only the other way round uses the inverse.
//! Results round to the target's minor unit, half away from zero.

use std::collections::BTreeMap;

use time::{Date, OffsetDateTime, UtcOffset};

use crate::money::{Currency, Money};

/// An exact positive rational rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    num: i128,
    den: i128,
}

impl Rate {
    /// Parses a plain positive decimal (`0.9231`, `157`).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let s = s.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits_ok(int) || !digits_ok(frac) || frac.len() > 18 {
            return Err(format!("{s:?} is not a plain decimal rate"));
        }
        let mut num: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            num = num
                .checked_mul(10)
                .and_then(|n| n.checked_add(i128::from(b - b'0')))
                .ok_or_else(|| format!("rate {s:?} is too large"))?;
        }
        let den = 10i128.pow(frac.len() as u32);
        if num == 0 {
            return Err(format!("rate {s:?} is zero"));
        }
        Ok(Rate { num, den })
    }

    fn inverse(self) -> Rate {
        Rate {
            num: self.den,
            den: self.num,
        }
    }
}

/// Daily rates by currency pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    pairs: BTreeMap<(Currency, Currency), BTreeMap<Date, Rate>>,
    max_age_days: i64,
}

/// How an amount was converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conversion {
    pub amount: i64,
    /// The date of the rate used.
    pub rate_date: Date,
}

impl Rates {
    /// No rates; amounts in other currencies stay unconverted.
    pub fn new(max_age_days: i64) -> Self {
        Self {
            pairs: BTreeMap::new(),
            max_age_days: max_age_days.max(0),
        }
    }

    /// Adds `1 from = rate to` on `date`.
    pub fn insert(&mut self, date: Date, from: Currency, to: Currency, rate: Rate) {
        self.pairs.entry((from, to)).or_default().insert(date, rate);
    }

    /// Reads CSV lines `date,from,to,rate` (`2025-03-01,USD,EUR,0.9231`); blank
    /// lines, `#` comments and a header line starting with `date` are skipped.
    pub fn parse_csv(text: &str, max_age_days: i64) -> Result<Rates, String> {
        let mut rates = Rates::new(max_age_days);
        let format = time::macros::format_description!("[year]-[month]-[day]");
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("date") {
                continue;
            }
            let at = |what: &str| format!("line {}: {what}", n + 1);
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            let [date, from, to, rate] = cols[..] else {
                return Err(at("expected date,from,to,rate"));
            };
            let date = Date::parse(date, format).map_err(|e| at(&format!("date: {e}")))?;
            let from = Currency::from_code(from).map_err(|e| at(&e.to_string()))?;
            let to = Currency::from_code(to).map_err(|e| at(&e.to_string()))?;
            let rate = Rate::parse(rate).map_err(|e| at(&e))?;
            rates.insert(date, from, to, rate);
        }
        Ok(rates)
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn lookup(&self, from: Currency, to: Currency, on: Date) -> Option<(Rate, Date)> {
        let oldest = on.checked_sub(time::Duration::days(self.max_age_days))?;
        let find = |from, to| {
            self.pairs
                .get(&(from, to))?
                .range(oldest..=on)
                .next_back()
                .map(|(d, r)| (*r, *d))
        };
        find(from, to).or_else(|| find(to, from).map(|(r, d)| (r.inverse(), d)))
    }

    /// `m` in `to` at the rate of `at`'s UTC date (see the module docs).
    pub fn convert(&self, m: Money, to: Currency, at: OffsetDateTime) -> Option<Conversion> {
        let on = at.to_offset(UtcOffset::UTC).date();
        if m.currency == to {
            return Some(Conversion {
                amount: m.minor,
                rate_date: on,
            });
        }
        let (rate, rate_date) = self.lookup(m.currency, to, on)?;
        let shift = i32::from(to.exponent()) - i32::from(m.currency.exponent());
        let mut num = i128::from(m.minor).checked_mul(rate.num)?;
        let mut den = rate.den;
        if shift >= 0 {
            num = num.checked_mul(10i128.checked_pow(shift as u32)?)?;
        } else {
            den = den.checked_mul(10i128.checked_pow((-shift) as u32)?)?;
        }
        let q = (num.abs() * 2 + den) / (den * 2);
        let amount = i64::try_from(if num < 0 { -q } else { q }).ok()?;
        Some(Conversion { amount, rate_date })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn c(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    #[test]
    fn converts_exactly_with_the_rate_of_the_day_or_an_earlier_one() {
        let rates = Rates::parse_csv(
            "date,from,to,rate\n2025-03-01,USD,EUR,0.92\n2025-03-03,USD,EUR,0.9\n# comment\n2025-03-01,EUR,JPY,160.5\n",
            3,
        )
        .unwrap();
        let usd = |m| Money::new(m, c("USD"));
        // 12.35 USD × 0.92 = 11.362 EUR → 11.36
        let on = |d| rates.convert(usd(1235), c("EUR"), d).map(|x| x.amount);
        assert_eq!(on(datetime!(2025-03-01 23:59 UTC)), Some(1136));
        // 2 March has no rate: 1 March's
        assert_eq!(on(datetime!(2025-03-02 10:00 UTC)), Some(1136));
        // 12.35 × 0.9 = 11.115 → 11.12 (half away from zero)
        assert_eq!(on(datetime!(2025-03-03 00:00 UTC)), Some(1112));
        // older than three days: no rate, never a guess
        assert_eq!(
            rates.convert(usd(100), c("EUR"), datetime!(2025-03-10 00:00 UTC)),
            None
        );
        // before any rate
        assert_eq!(on(datetime!(2025-02-28 00:00 UTC)), None);
        // the inverse pair: 10 EUR / 0.92 = 10.8695… USD → 10.87
        assert_eq!(
            rates
                .convert(
                    Money::new(1000, c("EUR")),
                    c("USD"),
                    datetime!(2025-03-01 12:00 UTC)
                )
                .map(|x| (x.amount, x.rate_date)),
            Some((1087, date!(2025 - 03 - 01)))
        );
        // exponents: 10.00 EUR × 160.5 = 1605 JPY; 1605 JPY / 160.5 = 10.00 EUR
        assert_eq!(
            rates
                .convert(
                    Money::new(1000, c("EUR")),
                    c("JPY"),
                    datetime!(2025-03-01 0:00 UTC)
                )
                .map(|x| x.amount),
            Some(1605)
        );
        assert_eq!(
            rates
                .convert(
                    Money::new(1605, c("JPY")),
                    c("EUR"),
                    datetime!(2025-03-01 0:00 UTC)
                )
                .map(|x| x.amount),
            Some(1000)
        );
        // negative amounts round away from zero too
        assert_eq!(
            rates
                .convert(usd(-1235), c("EUR"), datetime!(2025-03-03 0:00 UTC))
                .map(|x| x.amount),
            Some(-1112)
        );
    }

    #[test]
    fn refuses_what_is_not_a_rate() {
        for bad in [
            "2025-03-01,USD,EUR",
            "2025-3-1,USD,EUR,0.9",
            "2025-03-01,USD,ZZZ,0.9",
            "2025-03-01,USD,EUR,0",
            "2025-03-01,USD,EUR,-1",
            "2025-03-01,USD,EUR,1e3",
        ] {
            assert!(Rates::parse_csv(bad, 3).is_err(), "{bad}");
        }
    }
}
