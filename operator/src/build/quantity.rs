//! Kubernetes quantities compared by value: the API server stores `1024Mi` as `1Gi` and
//! `0.5` CPU as `500m`, so comparing the text of a child with the live object would see a
//! difference on every reconcile and re-apply forever. Hand-written because it is a few lines
//! of exact arithmetic and no kept crate exposes the comparison (k8s-openapi's `Quantity` is
//! the string).

/// Suffixes and their value in billionths (decimal) or as a power of two (binary).
const SUFFIXES: [(&str, Scale); 15] = [
    ("Ki", Scale::Binary(10)),
    ("Mi", Scale::Binary(20)),
    ("Gi", Scale::Binary(30)),
    ("Ti", Scale::Binary(40)),
    ("Pi", Scale::Binary(50)),
    ("Ei", Scale::Binary(60)),
    ("n", Scale::Decimal(-9)),
    ("u", Scale::Decimal(-6)),
    ("m", Scale::Decimal(-3)),
    ("k", Scale::Decimal(3)),
    ("M", Scale::Decimal(6)),
    ("G", Scale::Decimal(9)),
    ("T", Scale::Decimal(12)),
    ("P", Scale::Decimal(15)),
    ("E", Scale::Decimal(18)),
];

#[derive(Clone, Copy)]
enum Scale {
    Binary(u32),
    Decimal(i32),
}

/// Whether `a` and `b` are the same quantity written differently (both must parse).
pub fn same(a: &str, b: &str) -> bool {
    matches!((nanos(a), nanos(b)), (Some(x), Some(y)) if x == y)
}

/// The quantity in billionths of its unit, exactly; `None` when `text` is not a quantity or
/// does not fit.
fn nanos(text: &str) -> Option<i128> {
    let (number, scale) = split(text)?;
    let (digits, exponent) = decimal(number)?;
    let value = match scale {
        Scale::Binary(power) => scaled(
            digits.checked_mul(1i128 << power)?,
            exponent.checked_add(9)?,
        )?,
        Scale::Decimal(power) => scaled(digits, exponent.checked_add(power + 9)?)?,
    };
    Some(value)
}

/// The number and its suffix's scale (an `e` exponent folds into the number).
fn split(text: &str) -> Option<(&str, Scale)> {
    for (suffix, scale) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return Some((number, scale));
        }
    }
    Some((text, Scale::Decimal(0)))
}

/// `[+-]digits[.digits][e[+-]digits]` as an integer and a power of ten.
fn decimal(number: &str) -> Option<(i128, i32)> {
    let (mantissa, exponent) = match number.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (number, 0),
    };
    let (negative, unsigned) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all = format!("{whole}{fraction}");
    if all.is_empty() || !all.bytes().all(|b| b.is_ascii_digit()) || all.len() > 30 {
        return None;
    }
    let digits: i128 = all.parse().ok()?;
    let shift = i32::try_from(fraction.len()).ok()?;
    Some((
        if negative { -digits } else { digits },
        exponent.checked_sub(shift)?,
    ))
}

/// `digits × 10^power`, `None` unless exact and in range.
fn scaled(digits: i128, power: i32) -> Option<i128> {
    if power >= 0 {
        digits.checked_mul(10i128.checked_pow(u32::try_from(power).ok()?)?)
    } else {
        let divisor = 10i128.checked_pow(u32::try_from(-power).ok()?)?;
        (digits % divisor == 0).then(|| digits / divisor)
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn the_api_server_s_canonical_forms_are_the_same_quantity() {
        for (written, stored) in [
            ("1024Mi", "1Gi"),
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1e3", "1k"),
            ("1.5Gi", "1536Mi"),
            ("+2", "2"),
        ] {
            assert!(same(written, stored), "{written} = {stored}");
        }
        for (a, b) in [
            ("1Gi", "1G"),
            ("100m", "1"),
            ("2000Mi", "2Gi"),
            ("abc", "abc"),
            ("1x", "1x"),
        ] {
            assert!(!same(a, b), "{a} ≠ {b}");
        }
    }
}
