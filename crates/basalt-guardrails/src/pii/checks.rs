//! Checksums and structural rules that separate real identifiers from look-alikes.

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// The Luhn check (payment cards, Canadian SINs).
pub fn luhn(s: &str) -> bool {
    let d = digits(s);
    if d.len() < 2 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum % 10 == 0
}

/// A payment card: 13–19 digits, a known issuer prefix, and the Luhn check.
pub fn card_number(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) || !luhn(s) {
        return false;
    }
    let prefix = |n: usize| d.iter().take(n).fold(0u32, |acc, &x| acc * 10 + x);
    let p2 = prefix(2);
    let p4 = prefix(4);
    let p6 = prefix(6);
    d[0] == 4 // Visa
        || (51..=55).contains(&p2) || (2221..=2720).contains(&p4) // Mastercard
        || p2 == 34 || p2 == 37 // American Express
        || p4 == 6011 || p2 == 65 || (644..=649).contains(&prefix(3)) || (622126..=622925).contains(&p6) // Discover
        || (3528..=3589).contains(&p4) // JCB
        || p2 == 36 || p2 == 38 || (300..=305).contains(&prefix(3)) // Diners
        || p2 == 62 // UnionPay
        || [5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763].contains(&p4) // Maestro
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// An IBAN: the country's length and the ISO 7064 mod-97 check.
pub fn iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let upper = compact.to_ascii_uppercase();
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(cc, _)| upper.starts_with(cc)) else {
        return false;
    };
    if upper.len() != len || !upper.chars().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let (head, tail) = upper.split_at(4);
    let mut remainder: u64 = 0;
    for c in tail.chars().chain(head.chars()) {
        let value = match c.to_digit(36) {
            Some(v) => v as u64,
            None => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// A US Social Security number: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub fn ssn(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5..].iter().fold(0, |acc, &x| acc * 10 + x);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 && !all_same(&d)
}

fn all_same(d: &[u32]) -> bool {
    d.windows(2).all(|w| w[0] == w[1])
}

/// An ABA routing number: a known Federal Reserve prefix and the 3-7-1 checksum.
pub fn aba_routing(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 9 {
        return false;
    }
    let prefix = d[0] * 10 + d[1];
    let known =
        prefix <= 12 || (21..=32).contains(&prefix) || (61..=72).contains(&prefix) || prefix == 80;
    let sum = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8]);
    known && sum % 10 == 0 && !all_same(&d)
}

/// A vehicle identification number with a valid North American check digit.
pub fn vin(s: &str) -> bool {
    let s = s.to_ascii_uppercase();
    if s.len() != 17 || s.contains(['I', 'O', 'Q']) {
        return false;
    }
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let value = |c: char| -> Option<u32> {
        if let Some(d) = c.to_digit(10) {
            return Some(d);
        }
        let v = match c {
            'A' | 'J' => 1,
            'B' | 'K' | 'S' => 2,
            'C' | 'L' | 'T' => 3,
            'D' | 'M' | 'U' => 4,
            'E' | 'N' | 'V' => 5,
            'F' | 'W' => 6,
            'G' | 'P' | 'X' => 7,
            'H' | 'Y' => 8,
            'R' | 'Z' => 9,
            _ => return None,
        };
        Some(v)
    };
    let mut sum = 0;
    for (i, c) in s.chars().enumerate() {
        match value(c) {
            Some(v) => sum += v * WEIGHTS[i],
            None => return false,
        }
    }
    let check = sum % 11;
    let expected = if check == 10 {
        'X'
    } else {
        char::from_digit(check, 10).unwrap_or('?')
    };
    s.chars().nth(8) == Some(expected)
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

/// A UK NHS number: ten digits with the modulus-11 check digit.
pub fn nhs_number(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 10 || all_same(&d) {
        return false;
    }
    let sum: u32 = d[..9]
        .iter()
        .enumerate()
        .map(|(i, &x)| x * (10 - i as u32))
        .sum();
    let check = 11 - sum % 11;
    let check = if check == 11 { 0 } else { check };
    check != 10 && check == d[9]
}

/// A Canadian social insurance number: nine digits, Luhn, not starting with 8.
pub fn ca_sin(s: &str) -> bool {
    let d = digits(s);
    d.len() == 9 && d[0] != 8 && luhn(s) && !all_same(&d)
}

/// A UK unique taxpayer reference: ten digits whose first is the check digit of the rest.
pub fn uk_utr(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 10 {
        return false;
    }
    const WEIGHTS: [u32; 9] = [6, 7, 8, 9, 10, 5, 4, 3, 2];
    let sum: u32 = d[1..].iter().zip(WEIGHTS).map(|(x, w)| x * w).sum();
    const CHECK: [u32; 11] = [2, 1, 9, 8, 7, 6, 5, 4, 3, 2, 1];
    CHECK[(sum % 11) as usize] == d[0]
}

/// ISO 3166 alpha-2 codes, for SWIFT/BIC country positions.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

/// A SWIFT/BIC code: bank, a real country, location, optional branch.
pub fn swift(s: &str) -> bool {
    (s.len() == 8 || s.len() == 11)
        && s.is_char_boundary(6)
        && COUNTRIES.split(' ').any(|cc| cc == &s[4..6])
}

/// An IPv4 or IPv6 address.
pub fn ip_address(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_need_luhn_and_an_issuer() {
        assert!(card_number("4111 1111 1111 1111"));
        assert!(card_number("5500-0000-0000-0004"));
        assert!(card_number("378282246310005"));
        assert!(!card_number("4111 1111 1111 1112"), "Luhn fails");
        assert!(!card_number("9999 9999 9999 9995"), "no issuer");
    }

    #[test]
    fn ibans_need_length_and_mod_97() {
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("DE89370400440532013000"));
        assert!(!iban("GB82 WEST 1234 5698 7654 33"));
        assert!(!iban("DE8937040044053201300"), "one short");
    }

    #[test]
    fn identifiers_follow_their_rules() {
        assert!(ssn("123-45-6789"));
        assert!(!ssn("666-45-6789") && !ssn("000-12-3456") && !ssn("923-45-6789"));
        assert!(aba_routing("011000015"));
        assert!(!aba_routing("011000016"));
        assert!(vin("1M8GDM9AXKP042788"));
        assert!(!vin("1M8GDM9A1KP042788"));
        assert!(nhs_number("943 476 5919"));
        assert!(!nhs_number("943 476 5918"));
        assert!(ca_sin("046 454 286"));
        assert!(!ca_sin("046 454 287"));
        assert!(swift("DEUTDEFF") && swift("NEDSZAJJXXX"));
        assert!(!swift("DOCUQQNT"));
        assert!(ip_address("192.168.0.1") && ip_address("2001:db8::1"));
        assert!(!ip_address("300.1.1.1"));
    }
}
