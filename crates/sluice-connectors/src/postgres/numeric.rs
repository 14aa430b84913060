//! PostgreSQL `numeric` in its binary form, converted exactly (never through
//! floating point) to and from `Decimal128` and decimal text.
//!
//! The binary form is `ndigits`, `weight`, `sign`, `dscale` (16 bits each),
//! then `ndigits` base-10000 digits; the value is
//! `Σ digit[i] × 10000^(weight − i)`, shown with `dscale` fraction digits.

const POS: u16 = 0x0000;
const NEG: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PINF: u16 = 0xD000;
const NINF: u16 = 0xF000;

struct Parsed {
    weight: i16,
    sign: u16,
    dscale: u16,
    digits: Vec<i16>,
}

fn parse(v: &[u8]) -> Result<Parsed, String> {
    if v.len() < 8 {
        return Err("truncated numeric value".into());
    }
    let u16_at = |i: usize| u16::from_be_bytes([v[i], v[i + 1]]);
    let ndigits = u16_at(0) as usize;
    if v.len() != 8 + 2 * ndigits {
        return Err("numeric value with a wrong digit count".into());
    }
    Ok(Parsed {
        weight: u16_at(2) as i16,
        sign: u16_at(4),
        dscale: u16_at(6),
        digits: (0..ndigits).map(|i| u16_at(8 + 2 * i) as i16).collect(),
    })
}

fn special(sign: u16) -> Option<&'static str> {
    match sign {
        NAN => Some("NaN"),
        PINF => Some("Infinity"),
        NINF => Some("-Infinity"),
        _ => None,
    }
}

/// The value scaled by `10^scale` as an integer, as `Decimal128(_, scale)` holds it.
pub fn to_i128(v: &[u8], scale: i8) -> Result<i128, String> {
    let p = parse(v)?;
    if let Some(s) = special(p.sign) {
        return Err(format!(
            "numeric {s} has no decimal representation; read the column as text"
        ));
    }
    let overflow = || "numeric value exceeds 38 digits".to_string();
    // Walk the decimal digits from the most significant; keep those at or
    // above 10^-scale, which must be all the nonzero ones.
    let lowest = -(scale as i32);
    let mut acc: i128 = 0;
    let mut last = None;
    for (i, group) in p.digits.iter().enumerate() {
        let w = p.weight as i32 - i as i32;
        for k in 0..4 {
            let d = (*group as i32 / 10i32.pow(3 - k)) % 10;
            let pos = 4 * w + 3 - k as i32;
            if pos < lowest {
                if d != 0 {
                    return Err(format!("numeric has more than {scale} fraction digits"));
                }
                continue;
            }
            acc = acc
                .checked_mul(10)
                .and_then(|a| a.checked_add(d as i128))
                .ok_or_else(overflow)?;
            last = Some(pos);
        }
    }
    if let Some(last) = last {
        let m = 10i128.checked_pow((last - lowest) as u32).ok_or_else(overflow)?;
        acc = acc.checked_mul(m).ok_or_else(overflow)?;
    }
    Ok(if p.sign == NEG { -acc } else { acc })
}

/// Decimal text of a binary numeric, with its display scale (`12.50`).
pub fn to_text(v: &[u8]) -> Result<String, String> {
    let p = parse(v)?;
    if let Some(s) = special(p.sign) {
        return Ok(s.into());
    }
    let mut s = String::new();
    if p.sign == NEG {
        s.push('-');
    }
    let digit = |i: i32| -> i16 {
        if i >= 0 && (i as usize) < p.digits.len() {
            p.digits[i as usize]
        } else {
            0
        }
    };
    if p.weight < 0 {
        s.push('0');
    } else {
        for i in 0..=p.weight as i32 {
            let d = digit(i);
            if i == 0 {
                s.push_str(&d.to_string());
            } else {
                s.push_str(&format!("{d:04}"));
            }
        }
    }
    if p.dscale > 0 {
        s.push('.');
        let mut frac = String::new();
        let mut i = p.weight as i32 + 1;
        while frac.len() < p.dscale as usize {
            frac.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        frac.truncate(p.dscale as usize);
        s.push_str(&frac);
    }
    Ok(s)
}

/// Appends the binary numeric of decimal text (`-12.50`, `1e3`, `NaN`) to `out`.
pub fn from_text(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a number");
    let special = match t.to_ascii_lowercase().as_str() {
        "nan" => Some(NAN),
        "infinity" | "+infinity" | "inf" => Some(PINF),
        "-infinity" | "-inf" => Some(NINF),
        _ => None,
    };
    if let Some(sign) = special {
        for v in [0u16, 0, sign, 0] {
            out.extend(v.to_be_bytes());
        }
        return Ok(());
    }
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // All digits, and where the decimal point falls among them.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let point = int.len() as i32 + exp;
    let dscale = (frac.len() as i32 - exp).max(0);
    encode_digits(neg, &digits, point, dscale, out)
}

/// Appends the binary numeric of `Decimal128` value `v` at `scale`.
pub fn from_i128(v: i128, scale: i8, out: &mut Vec<u8>) -> Result<(), String> {
    let s = v.unsigned_abs().to_string();
    let digits: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
    let point = digits.len() as i32 - scale as i32;
    encode_digits(v < 0, &digits, point, (scale as i32).max(0), out)
}

/// `digits` with the decimal point after `point` of them (may be outside).
fn encode_digits(neg: bool, digits: &[u8], point: i32, dscale: i32, out: &mut Vec<u8>) -> Result<(), String> {
    if dscale > 0x3FFF {
        return Err("numeric scale beyond what PostgreSQL stores".into());
    }
    // Align to base-10000 groups: group g covers decimal positions
    // [4g, 4g+4) counted from the point, so pad to a multiple of 4 on the left.
    let lead = (4 - point.rem_euclid(4)) % 4;
    let first_group_pos = point + lead; // digits before the point, padded
    let weight_full = first_group_pos / 4 - 1;
    let total = lead as usize + digits.len();
    let ngroups = total.div_ceil(4);
    let mut groups: Vec<i16> = Vec::with_capacity(ngroups);
    for g in 0..ngroups {
        let mut val = 0i16;
        for k in 0..4 {
            let i = (g * 4 + k) as i32 - lead;
            let d = if i >= 0 && (i as usize) < digits.len() {
                digits[i as usize] as i16
            } else {
                0
            };
            val = val * 10 + d;
        }
        groups.push(val);
    }
    // Strip leading and trailing zero groups.
    let first = groups.iter().position(|g| *g != 0);
    let (groups, weight) = match first {
        None => (&groups[..0], 0),
        Some(f) => {
            let last = groups.iter().rposition(|g| *g != 0).unwrap_or(f);
            (&groups[f..=last], weight_full - f as i32)
        }
    };
    if !(-0x8000..=0x7FFF).contains(&weight) || groups.len() > 0xFFFF {
        return Err("numeric value beyond what PostgreSQL stores".into());
    }
    let sign = if neg && !groups.is_empty() { NEG } else { POS };
    out.extend((groups.len() as u16).to_be_bytes());
    out.extend((weight as i16).to_be_bytes());
    out.extend(sign.to_be_bytes());
    out.extend((dscale as u16).to_be_bytes());
    for g in groups {
        out.extend(g.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let mut b = Vec::new();
        from_text(text, &mut b).unwrap();
        to_text(&b).unwrap()
    }

    #[test]
    fn text_round_trips_exactly() {
        for t in [
            "0",
            "1",
            "-1",
            "12.50",
            "0.0001",
            "-0.000123",
            "10000",
            "123456789012345678901234567890.123456789",
            "99999999999999999999999999999999999999",
            "0.00",
            "NaN",
            "Infinity",
        ] {
            assert_eq!(round_trip(t), t, "{t}");
        }
        assert_eq!(round_trip("1.5e3"), "1500");
        assert_eq!(round_trip("1.5e-3"), "0.0015");
        assert!(from_text("12a", &mut Vec::new()).unwrap_err().contains("12a"));
    }

    #[test]
    fn decimal128_round_trips_exactly() {
        for (v, s) in [(1250i128, 2i8), (-5, 3), (0, 2), (i128::MAX / 10, 10), (123456789, 0)] {
            let mut b = Vec::new();
            from_i128(v, s, &mut b).unwrap();
            assert_eq!(to_i128(&b, s).unwrap(), v, "{v} scale {s}");
        }
        let mut b = Vec::new();
        from_text("1.234", &mut b).unwrap();
        assert!(to_i128(&b, 2).unwrap_err().contains("fraction digits"));
        assert_eq!(to_i128(&b, 4).unwrap(), 12340);
    }
}
