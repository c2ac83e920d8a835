//! Kubernetes resource quantities (`500m`, `1Gi`, `1e3`) parsed and written back in the
//! canonical form the API server stores, so `1024Mi` comes back as `1Gi` and `0.5` as `500m`,
//! as on a real cluster (clients that compare what they wrote with what they read must cope).
//!
//! Hand-written because no crate writes the canonical form: `kube_quantity` and
//! `k8s_quantity_parser` parse quantities for arithmetic and print them as given (or as
//! floats), and neither follows apimachinery's rules. The rules reproduced here are those of
//! `k8s.io/apimachinery/pkg/api/resource` (`ParseQuantity` and `CanonicalizeBytes`):
//!
//! - the suffix decides the format: binary (`Ki`…`Ei`), decimal SI (`n`…`E`, or none) or a
//!   decimal exponent (`e3`, `E-3`);
//! - values are rounded up (away from zero) to nano precision;
//! - binary values stay binary when they are whole numbers of at least 1024 in magnitude, with
//!   the largest exact suffix (`1024Mi` → `1Gi`, `2000Mi` stays), else they are written as
//!   decimal SI (`0.5Ki` → `512`, `1.1Ki` → `1126400m`);
//! - decimal values get the largest suffix (a multiple of three in the exponent) that leaves a
//!   whole mantissa (`1000m` → `1`, `0.5` → `500m`, `1.5k` → `1500`);
//! - a string that is already in that form is kept verbatim, as apimachinery caches it
//!   (which is why `1e3` stays `1e3` rather than becoming `1k`, and `+1` stays `+1`).
//!
//! Mantissas are held in an `i128` (38 digits); longer numbers are refused, where Kubernetes
//! would fall back to arbitrary precision. Decimal exponents beyond `E` (10^18) are written as
//! `e21` and so on (apimachinery writes no suffix there, which changes the value).

/// The three formats a quantity keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// apimachinery's error for a string that is not a quantity.
pub const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// The pieces of a quantity string, as apimachinery's scanner splits them.
struct Scanned<'a> {
    negative: bool,
    /// Whole digits without leading zeros (`"0"` when there are none).
    num: &'a str,
    /// Fraction digits.
    denom: &'a str,
    suffix: &'a str,
}

/// The canonical form of `text`, or apimachinery's error message.
pub fn canonical(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(FORMAT_ERROR.to_owned());
    }
    if text == "0" {
        return Ok(text.to_owned());
    }
    let scanned = scan(text)?;
    let (format, base, exponent) = interpret(scanned.suffix)?;
    if is_cached(&scanned, format, exponent) {
        return Ok(text.to_owned());
    }
    let digits = format!("{}{}", scanned.num, scanned.denom);
    let mut mantissa: i128 = digits
        .parse()
        .map_err(|_| "unable to parse numeric part of quantity".to_owned())?;
    let denom_len = i32::try_from(scanned.denom.len()).map_err(|_| FORMAT_ERROR.to_owned())?;
    let mut scale = -denom_len;
    if base == 10 {
        scale += exponent;
    } else {
        let shift = u32::try_from(exponent).map_err(|_| FORMAT_ERROR.to_owned())?;
        mantissa = mantissa
            .checked_mul(1i128 << shift)
            .ok_or_else(|| "unable to parse numeric part of quantity".to_owned())?;
    }
    let (mut mantissa, scale) = round_up_to_nano(mantissa, scale);
    if format == Format::BinarySi {
        mantissa = cap_binary(mantissa, scale);
    }
    let amount = if scanned.negative {
        -mantissa
    } else {
        mantissa
    };
    Ok(format_amount(amount, scale, format))
}

/// apimachinery's `parseQuantityString`: sign, digits, fraction, suffix letters, then an
/// optional signed exponent.
fn scan(text: &str) -> Result<Scanned<'_>, String> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let rest = rest.trim_start_matches('0');
    let whole_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let num = if whole_end == 0 {
        "0"
    } else {
        &rest[..whole_end]
    };
    let mut rest = &rest[whole_end..];
    let mut denom = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let end = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        denom = &after_dot[..end];
        rest = &after_dot[end..];
    }
    let letters = rest
        .find(|c: char| !"eEinumkKMGTP".contains(c))
        .unwrap_or(rest.len());
    let tail = &rest[letters..];
    let tail = tail.strip_prefix(['+', '-']).unwrap_or(tail);
    if !tail.chars().all(|c| c.is_ascii_digit()) {
        return Err(FORMAT_ERROR.to_owned());
    }
    Ok(Scanned {
        negative,
        num,
        denom,
        suffix: rest,
    })
}

const DECIMAL_SUFFIXES: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

const BINARY_SUFFIXES: [(&str, i32); 7] = [
    ("", 0),
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];

/// The format, base and exponent a suffix stands for.
fn interpret(suffix: &str) -> Result<(Format, u32, i32), String> {
    if let Some((_, exponent)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok((Format::DecimalSi, 10, *exponent));
    }
    if let Some((_, exponent)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok((Format::BinarySi, 2, *exponent));
    }
    let suffix_error = || "unable to parse quantity's suffix".to_owned();
    let digits = suffix
        .strip_prefix(['e', 'E'])
        .filter(|d| !d.is_empty())
        .ok_or_else(suffix_error)?;
    let exponent: i32 = digits.parse().map_err(|_| suffix_error())?;
    Ok((Format::DecimalExponent, 10, exponent))
}

/// Whether apimachinery's fast path keeps the string as written (its "already canonical"
/// cache), which decides the stored form of e.g. `1e3` and `+1`.
fn is_cached(scanned: &Scanned<'_>, format: Format, exponent: i32) -> bool {
    let digits = scanned.num.len() + scanned.denom.len();
    let shifted = format!("{}{}", scanned.num, scanned.denom);
    if format == Format::BinarySi {
        let precision = 15 - scanned.num.len() as i64 - i64::from(exponent) * 3 / 10 - 1;
        let Ok(value) = scanned.num.parse::<i64>() else {
            return false;
        };
        let fits = value.checked_mul(1i64 << exponent.clamp(0, 62)).is_some();
        return scanned.denom.is_empty()
            && precision >= 0
            && fits
            && exponent % 10 == 0
            && value & 0x07 != 0;
    }
    let scale = i64::from(exponent) - scanned.denom.len() as i64;
    digits <= 18
        && scale >= -9
        && scale % 3 == 0
        && !shifted.ends_with("000")
        && !shifted.starts_with('0')
}

/// Rounds `mantissa × 10^scale` up (away from zero) to at most nine fraction digits.
fn round_up_to_nano(mantissa: i128, scale: i32) -> (i128, i32) {
    if scale >= -9 || mantissa == 0 {
        return (mantissa, scale);
    }
    let mut value = mantissa;
    let mut scale = scale;
    let mut inexact = false;
    while scale < -9 {
        inexact |= value % 10 != 0;
        value /= 10;
        scale += 1;
    }
    (if inexact { value + 1 } else { value }, scale)
}

/// apimachinery caps binary quantities at the largest int64.
fn cap_binary(mantissa: i128, scale: i32) -> i128 {
    let max = i128::from(i64::MAX);
    if scale == 0 && mantissa > max {
        max
    } else {
        mantissa
    }
}

/// `CanonicalizeBytes`: writes `amount × 10^scale` in `format`.
fn format_amount(amount: i128, scale: i32, format: Format) -> String {
    if amount == 0 {
        return "0".to_owned();
    }
    if format == Format::BinarySi
        && let Some(whole) = whole_value(amount, scale)
        && whole.unsigned_abs() >= 1024
    {
        let (mantissa, exponent) = remove_factors(whole, 1024);
        return match BINARY_SUFFIXES.get(exponent as usize) {
            Some((suffix, _)) => format!("{mantissa}{suffix}"),
            None => format!("{whole}"),
        };
    }
    let (mut mantissa, mut exponent) = remove_factors(amount, 10);
    exponent += scale;
    while exponent.rem_euclid(3) != 0 {
        mantissa *= 10;
        exponent -= 1;
    }
    let suffix = match format {
        Format::DecimalExponent if exponent == 0 => String::new(),
        Format::DecimalExponent => format!("e{exponent}"),
        _ => DECIMAL_SUFFIXES
            .iter()
            .find(|(_, e)| *e == exponent)
            .map_or_else(|| format!("e{exponent}"), |(s, _)| (*s).to_owned()),
    };
    format!("{mantissa}{suffix}")
}

/// `amount × 10^scale` as a whole number, when it is one.
fn whole_value(amount: i128, scale: i32) -> Option<i128> {
    let mut value = amount;
    for _ in scale..0 {
        if value % 10 != 0 {
            return None;
        }
        value /= 10;
    }
    for _ in 0..scale {
        value = value.checked_mul(10)?;
    }
    Some(value)
}

/// Divides out `factor` as often as it goes: (rest, times).
fn remove_factors(mut value: i128, factor: i128) -> (i128, i32) {
    let mut times = 0;
    while value != 0 && value % factor == 0 {
        value /= factor;
        times += 1;
    }
    (value, times)
}

#[cfg(test)]
mod tests {
    use super::canonical;

    fn check(cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            assert_eq!(
                canonical(input).as_deref(),
                Ok(*expected),
                "canonical form of {input:?}"
            );
        }
    }

    #[test]
    fn binary_suffixes_take_the_largest_exact_one() {
        check(&[
            ("1024Mi", "1Gi"),
            ("2000Mi", "2000Mi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("2048Ki", "2Mi"),
            ("1Ki", "1Ki"),
            ("64Mi", "64Mi"),
            ("0Mi", "0"),
            ("-1024Ki", "-1Mi"),
        ]);
    }

    #[test]
    fn small_or_fractional_binary_values_become_decimal() {
        check(&[
            ("0.5Ki", "512"),
            ("1.5Ki", "1536"),
            ("1.1Ki", "1126400m"),
            ("1.1Mi", "1153433600m"),
        ]);
    }

    #[test]
    fn decimal_values_take_the_largest_whole_suffix() {
        check(&[
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1.5", "1500m"),
            ("1.5k", "1500"),
            ("100m", "100m"),
            ("2", "2"),
            ("1000", "1k"),
            ("128974848000m", "128974848"),
            ("0.1", "100m"),
            (".5", "500m"),
            ("0.000000001", "1n"),
            ("1000000u", "1"),
            ("1000k", "1M"),
            ("1000P", "1E"),
            ("-0.5", "-500m"),
            ("0", "0"),
            ("0.0", "0"),
        ]);
    }

    #[test]
    fn exponents_stay_exponents_and_canonical_strings_are_kept_verbatim() {
        check(&[
            ("1e3", "1e3"),
            ("1E3", "1E3"),
            ("1e-3", "1e-3"),
            ("1000e3", "1e6"),
            ("1.5e3", "1500"),
            ("12e6", "12e6"),
            ("+1", "+1"),
            (" 2Gi ", "2Gi"),
        ]);
    }

    #[test]
    fn beyond_nano_rounds_up_away_from_zero() {
        check(&[("0.0000000001", "1n"), ("1.0000000001", "1000000001n")]);
        check(&[("-0.0000000001", "-1n")]);
    }

    #[test]
    fn malformed_quantities_are_refused_with_apimachinery_s_messages() {
        for bad in ["", "abc", "1 Gi", "1x", "1Gb", "1.2.3", "1e", "1m3", "--1"] {
            assert!(canonical(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(canonical("1x"), Err(super::FORMAT_ERROR.to_owned()));
        assert_eq!(
            canonical("1K").unwrap_err(),
            "unable to parse quantity's suffix"
        );
    }
}
