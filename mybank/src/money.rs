//! Amounts of money: integer minor units (cents) and ISO 4217 currencies, never floats.
//!
//! The apps send amounts as decimal text or JSON numbers ("1000", "1000.50", 1000.5); they are
//! parsed exactly into minor units with the currency's number of decimals, so `0.1 + 0.2` never
//! happens to a threshold.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The currencies MyBank handles, with their ISO 4217 minor-unit exponent.
pub const CURRENCIES: &[(&str, u32)] = &[
    ("EUR", 2),
    ("USD", 2),
    ("GBP", 2),
    ("CHF", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("JPY", 0),
];

/// The number of decimals of `currency`, or `None` if MyBank does not know it.
pub fn exponent(currency: &str) -> Option<u32> {
    CURRENCIES
        .iter()
        .find(|(code, _)| *code == currency)
        .map(|(_, exp)| *exp)
}

/// An amount in minor units of a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Minor units (cents for EUR/USD, yen for JPY).
    pub amount_minor: i64,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
}

impl Money {
    /// Parses a positive decimal amount (`"1000"`, `"1000.5"`, `"1000.50"`) in `currency`.
    pub fn parse(amount: &str, currency: &str) -> Result<Money, String> {
        let exp = exponent(currency).ok_or_else(|| {
            let known: Vec<&str> = CURRENCIES.iter().map(|(c, _)| *c).collect();
            format!("unknown currency {currency:?} (one of {known:?})")
        })?;
        let text = amount;
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let decimal = |whole: &str| {
            digits(whole) && (fraction.is_empty() || digits(fraction)) && !text.ends_with('.')
        };
        if let Some(positive) = whole.strip_prefix('-')
            && decimal(positive)
        {
            return Err(format!("amount must be greater than 0, got {amount:?}"));
        }
        if !decimal(whole) {
            return Err(format!(
                "amount {amount:?} is not a decimal number: digits with an optional '.' and \
                 decimals, no sign, exponent or spaces (e.g. \"1000.50\")"
            ));
        }
        if fraction.len() > exp as usize {
            return Err(format!(
                "amount {amount:?} has more than {exp} decimals, the minor unit of {currency}"
            ));
        }
        let scale = 10_i64.pow(exp);
        let padded = format!("{fraction:0<width$}", width = exp as usize);
        let minor = whole
            .parse::<i64>()
            .ok()
            .and_then(|w| w.checked_mul(scale))
            .and_then(|w| {
                w.checked_add(if padded.is_empty() {
                    0
                } else {
                    padded.parse::<i64>().ok()?
                })
            })
            .ok_or_else(|| format!("amount {amount:?} is too large"))?;
        if minor <= 0 {
            return Err(format!("amount must be greater than 0, got {amount:?}"));
        }
        Ok(Money {
            amount_minor: minor,
            currency: currency.to_owned(),
        })
    }

    /// `1234.50 EUR`.
    pub fn display(amount_minor: i64, currency: &str) -> String {
        let exp = exponent(currency).unwrap_or(2);
        if exp == 0 {
            return format!("{amount_minor} {currency}");
        }
        let scale = 10_i64.pow(exp);
        let sign = if amount_minor < 0 { "-" } else { "" };
        let abs = amount_minor.unsigned_abs();
        format!(
            "{sign}{}.{:0width$} {currency}",
            abs / scale as u64,
            abs % scale as u64,
            width = exp as usize
        )
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&Money::display(self.amount_minor, &self.currency))
    }
}

#[cfg(test)]
mod tests {
    use super::Money;

    #[test]
    fn parses_exact_minor_units() {
        assert_eq!(Money::parse("1000", "USD").unwrap().amount_minor, 100_000);
        assert_eq!(Money::parse("1000.5", "EUR").unwrap().amount_minor, 100_050);
        assert_eq!(Money::parse("0.01", "EUR").unwrap().amount_minor, 1);
        assert_eq!(Money::parse("5000", "JPY").unwrap().amount_minor, 5000);
    }

    #[test]
    fn rejects_what_is_not_a_positive_amount() {
        for (amount, currency) in [
            ("0", "USD"),
            ("0.00", "USD"),
            ("-5", "USD"),
            ("abc", "USD"),
            ("", "USD"),
            ("1.", "USD"),
            (".5", "USD"),
            ("1e3", "USD"),
            ("1.001", "USD"),
            ("1.5", "JPY"),
            ("10", "XYZ"),
            ("10", "usd"),
            ("99999999999999999999", "USD"),
            (" 12 ", "USD"),
            ("12 ", "USD"),
            ("+12", "USD"),
        ] {
            assert!(
                Money::parse(amount, currency).is_err(),
                "{amount:?} {currency:?} should be rejected"
            );
        }
    }

    /// The message says what is wrong: a negative amount is not "not a decimal number".
    #[test]
    fn says_why() {
        let negative = Money::parse("-5", "EUR").unwrap_err();
        assert!(negative.contains("greater than 0"), "{negative}");
        let spaced = Money::parse(" 12 ", "EUR").unwrap_err();
        assert!(spaced.contains("spaces"), "{spaced}");
    }

    #[test]
    fn displays_with_the_currency_decimals() {
        assert_eq!(Money::display(123_450, "EUR"), "1234.50 EUR");
        assert_eq!(Money::display(-5, "USD"), "-0.05 USD");
        assert_eq!(Money::display(5000, "JPY"), "5000 JPY");
    }
}
