//! Bedrock's 31 PII entity types and a recognizer for each.
//!
//! Every recognizer is a pattern plus, where one exists, a checksum or structural rule
//! (Luhn for cards and Canadian SINs, mod-97 for IBANs, SSN area rules, the ABA
//! checksum, VIN check digits, NHS modulus 11, UTR check digits) or a required context
//! word (a CVV is three digits only next to "CVV"). Phone numbers are parsed and
//! validated with `phonenumber` (libphonenumber's metadata). Names use the US Census
//! given-name and surname lists plus context phrases ("my name is", titles);
//! addresses use a street-address grammar. Overlapping candidates are resolved by
//! strength (validated first), then length.

mod checks;
mod names;

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A PII entity type, spelled as Bedrock spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(clippy::upper_case_acronyms)]
pub enum PiiType {
    Address,
    Age,
    AwsAccessKey,
    AwsSecretKey,
    CaHealthNumber,
    CaSocialInsuranceNumber,
    CreditDebitCardCvv,
    CreditDebitCardExpiry,
    CreditDebitCardNumber,
    DriverId,
    Email,
    InternationalBankAccountNumber,
    IpAddress,
    LicensePlate,
    MacAddress,
    Name,
    Password,
    Phone,
    Pin,
    SwiftCode,
    UkNationalHealthServiceNumber,
    UkNationalInsuranceNumber,
    UkUniqueTaxpayerReferenceNumber,
    Url,
    Username,
    UsBankAccountNumber,
    UsBankRoutingNumber,
    UsIndividualTaxIdentificationNumber,
    UsPassportNumber,
    UsSocialSecurityNumber,
    VehicleIdentificationNumber,
}

impl PiiType {
    pub const ALL: [PiiType; 31] = [
        Self::Address,
        Self::Age,
        Self::AwsAccessKey,
        Self::AwsSecretKey,
        Self::CaHealthNumber,
        Self::CaSocialInsuranceNumber,
        Self::CreditDebitCardCvv,
        Self::CreditDebitCardExpiry,
        Self::CreditDebitCardNumber,
        Self::DriverId,
        Self::Email,
        Self::InternationalBankAccountNumber,
        Self::IpAddress,
        Self::LicensePlate,
        Self::MacAddress,
        Self::Name,
        Self::Password,
        Self::Phone,
        Self::Pin,
        Self::SwiftCode,
        Self::UkNationalHealthServiceNumber,
        Self::UkNationalInsuranceNumber,
        Self::UkUniqueTaxpayerReferenceNumber,
        Self::Url,
        Self::Username,
        Self::UsBankAccountNumber,
        Self::UsBankRoutingNumber,
        Self::UsIndividualTaxIdentificationNumber,
        Self::UsPassportNumber,
        Self::UsSocialSecurityNumber,
        Self::VehicleIdentificationNumber,
    ];

    /// Bedrock's name, also the anonymization tag (`{EMAIL}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Address => "ADDRESS",
            Self::Age => "AGE",
            Self::AwsAccessKey => "AWS_ACCESS_KEY",
            Self::AwsSecretKey => "AWS_SECRET_KEY",
            Self::CaHealthNumber => "CA_HEALTH_NUMBER",
            Self::CaSocialInsuranceNumber => "CA_SOCIAL_INSURANCE_NUMBER",
            Self::CreditDebitCardCvv => "CREDIT_DEBIT_CARD_CVV",
            Self::CreditDebitCardExpiry => "CREDIT_DEBIT_CARD_EXPIRY",
            Self::CreditDebitCardNumber => "CREDIT_DEBIT_CARD_NUMBER",
            Self::DriverId => "DRIVER_ID",
            Self::Email => "EMAIL",
            Self::InternationalBankAccountNumber => "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
            Self::IpAddress => "IP_ADDRESS",
            Self::LicensePlate => "LICENSE_PLATE",
            Self::MacAddress => "MAC_ADDRESS",
            Self::Name => "NAME",
            Self::Password => "PASSWORD",
            Self::Phone => "PHONE",
            Self::Pin => "PIN",
            Self::SwiftCode => "SWIFT_CODE",
            Self::UkNationalHealthServiceNumber => "UK_NATIONAL_HEALTH_SERVICE_NUMBER",
            Self::UkNationalInsuranceNumber => "UK_NATIONAL_INSURANCE_NUMBER",
            Self::UkUniqueTaxpayerReferenceNumber => "UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER",
            Self::Url => "URL",
            Self::Username => "USERNAME",
            Self::UsBankAccountNumber => "US_BANK_ACCOUNT_NUMBER",
            Self::UsBankRoutingNumber => "US_BANK_ROUTING_NUMBER",
            Self::UsIndividualTaxIdentificationNumber => "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER",
            Self::UsPassportNumber => "US_PASSPORT_NUMBER",
            Self::UsSocialSecurityNumber => "US_SOCIAL_SECURITY_NUMBER",
            Self::VehicleIdentificationNumber => "VEHICLE_IDENTIFICATION_NUMBER",
        }
    }
}

/// One detected entity: its type and byte range in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    pub kind: PiiType,
    pub start: usize,
    pub end: usize,
}

/// How much a recognizer's hit is worth when candidates overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    /// A pattern alone (addresses, names, @handles).
    Pattern = 1,
    /// A pattern whose checksum or registry check passed.
    Validated = 2,
    /// A value introduced by a context phrase ("account number", "SSN"): the text
    /// says what it is, which outranks a look-alike of another type.
    Context = 3,
}

struct Recognizer {
    kind: PiiType,
    /// The value is the group named `v` when present, else the whole match.
    pattern: Regex,
    validate: Option<fn(&str) -> bool>,
    strength: Strength,
}

fn rx(pattern: &str) -> Regex {
    // The patterns are constants checked by the tests below; a typo is a bug that
    // every test run catches, so failing loudly here is right.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("built-in PII pattern compiles")
}

/// Separators allowed inside digit groups.
const SEP: &str = r"[ \-]?";

static RECOGNIZERS: LazyLock<Vec<Recognizer>> = LazyLock::new(|| {
    use PiiType::*;
    use Strength::*;
    let r = |kind, pattern: &str, validate: Option<fn(&str) -> bool>, strength| Recognizer {
        kind,
        pattern: rx(pattern),
        validate,
        strength,
    };
    vec![
        r(
            Email,
            r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,24}\b",
            None,
            Validated,
        ),
        r(
            Url,
            r#"(?i)\b(?:https?://|ftp://|www\.)[^\s<>"'`]+[^\s<>"'`.,;:!?)\]}]"#,
            None,
            Validated,
        ),
        r(
            CreditDebitCardNumber,
            &format!(
                r"\b(?P<v>\d{{4}}{SEP}\d{{4}}{SEP}\d{{4}}{SEP}\d{{1,7}}|\d{{4}}{SEP}\d{{6}}{SEP}\d{{4,5}})\b"
            ),
            Some(checks::card_number),
            Validated,
        ),
        r(
            CreditDebitCardCvv,
            r"(?i)\b(?:cvv2?|cvc2?|cid|security code|card verification (?:value|code))(?:\s+(?:code|number|no\.?))?\s*(?:is|:|=|of)?\s*(?P<v>\d{3,4})\b",
            None,
            Context,
        ),
        r(
            CreditDebitCardExpiry,
            r"(?i)\b(?:exp(?:iry|iration|\.)?(?:\s+date)?|expires?(?:\s+on)?|valid\s+(?:thru|through|until))\s*(?:is|:|=|on)?\s*(?P<v>(?:0?[1-9]|1[0-2])\s*/\s*(?:\d{4}|\d{2})|(?:0[1-9]|1[0-2])-(?:\d{4}|\d{2}))\b",
            None,
            Context,
        ),
        r(
            CreditDebitCardExpiry,
            r"\b(?P<v>(?:0[1-9]|1[0-2])/\d{2})\b",
            None,
            Pattern,
        ),
        r(
            Pin,
            r"(?i)\bpin(?:\s+(?:code|number|no\.?))?\s*(?:is|:|=)?\s*(?P<v>\d{4,8})\b",
            None,
            Context,
        ),
        r(
            InternationalBankAccountNumber,
            r"\b(?P<v>[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)\b",
            Some(checks::iban),
            Validated,
        ),
        r(
            SwiftCode,
            r"(?i)\b(?:swift|bic)(?:\s+(?:code|number|no\.?))?\s*(?:is|:|=)?\s*(?-i:(?P<v>[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?))\b",
            Some(checks::swift),
            Context,
        ),
        r(
            AwsAccessKey,
            r"\b(?P<v>(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA|AIPA|ANPA|ANVA|AGPA)[A-Z0-9]{16})\b",
            None,
            Validated,
        ),
        r(
            AwsSecretKey,
            r"(?i)(?:aws)?.{0,20}?(?:secret|private)(?:[\s_\-]*access)?[\s_\-]*key(?:\s+id)?\W{0,5}(?:is\s+)?(?-i:(?P<v>[A-Za-z0-9/+=]{40}))(?:[^A-Za-z0-9/+=]|$)",
            None,
            Context,
        ),
        r(
            IpAddress,
            r"\b(?P<v>(?:\d{1,3}\.){3}\d{1,3})\b",
            Some(checks::ip_address),
            Validated,
        ),
        r(
            IpAddress,
            r"(?:^|[^0-9A-Fa-f:])(?P<v>[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?:$|[^0-9A-Fa-f:])",
            Some(checks::ip_address),
            Validated,
        ),
        r(
            MacAddress,
            r"\b(?P<v>(?:[0-9A-Fa-f]{2}[:\-]){5}[0-9A-Fa-f]{2}|(?:[0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4})\b",
            None,
            Validated,
        ),
        r(
            UsSocialSecurityNumber,
            r"\b(?P<v>\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4})\b",
            Some(checks::ssn),
            Validated,
        ),
        r(
            UsSocialSecurityNumber,
            r"(?i)\b(?:ssn|social security(?: number| no\.?)?|soc\.? sec\.?(?: no\.?)?)\s*(?:is|:|#|=)?\s*(?P<v>\d{9})\b",
            Some(checks::ssn),
            Context,
        ),
        r(
            UsIndividualTaxIdentificationNumber,
            r"\b(?P<v>9\d{2}[- ]?(?:5\d|6[0-5]|7\d|8[0-8]|9[0-24-9])[- ]?\d{4})\b",
            None,
            Validated,
        ),
        r(
            UsBankRoutingNumber,
            r"(?i)\b(?:routing|aba|rtn|transit)(?:\s+(?:number|no\.?|#))?\s*(?:is|:|#|=)?\s*(?P<v>\d{9})\b",
            Some(checks::aba_routing),
            Context,
        ),
        r(
            UsBankAccountNumber,
            r"(?i)\b(?:bank\s+)?(?:account|acct\.?|a/c)(?:\s+(?:number|no\.?|#))?\s*(?:is|:|#|=)?\s*(?P<v>\d{6,17})\b",
            None,
            Context,
        ),
        r(
            UsPassportNumber,
            r"(?i)\bpassport(?:\s+(?:number|no\.?|#|id))?\s*(?:is|:|#|=)?\s*(?-i:(?P<v>[A-Z]?\d{8,9}))\b",
            None,
            Context,
        ),
        r(
            DriverId,
            r"(?i)\b(?:driver'?s?\s+licen[cs]e|driving\s+licen[cs]e|driver\s+id|dl)(?:\s+(?:number|no\.?|#|id))?\s*(?:is|:|#|=)?\s*(?P<v>[A-Z0-9][A-Z0-9\-]{3,18}[A-Z0-9])\b",
            Some(has_digit),
            Context,
        ),
        r(
            LicensePlate,
            r"(?i)\b(?:licen[cs]e\s+plate|plate|registration|reg\.?)(?:\s+(?:number|no\.?|#))?\s*(?:is|:|#|=)?\s*(?P<v>[A-Z0-9]{1,4}[ \-]?[A-Z0-9]{1,4}(?:[ \-][A-Z0-9]{1,3})?)\b",
            Some(has_digit),
            Context,
        ),
        r(
            VehicleIdentificationNumber,
            r"\b(?P<v>[A-HJ-NPR-Z0-9]{17})\b",
            Some(checks::vin),
            Validated,
        ),
        r(
            VehicleIdentificationNumber,
            r"(?i)\b(?:vin|vehicle identification number)\s*(?:is|:|#|=)?\s*(?-i:(?P<v>[A-HJ-NPR-Z0-9]{17}))\b",
            None,
            Context,
        ),
        r(
            UkNationalInsuranceNumber,
            r"\b(?P<v>(?:[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D])\b",
            Some(nino_prefix),
            Validated,
        ),
        r(
            UkNationalHealthServiceNumber,
            r"\b(?P<v>\d{3}[ \-]?\d{3}[ \-]?\d{4})\b",
            Some(nhs_with_spacing),
            Validated,
        ),
        r(
            UkUniqueTaxpayerReferenceNumber,
            r"(?i)\b(?:utr|unique taxpayer reference|tax reference)(?:\s+(?:number|no\.?))?\s*(?:is|:|#|=)?\s*(?P<v>\d{5}\s?\d{5})\b",
            Some(checks::uk_utr),
            Context,
        ),
        r(
            CaSocialInsuranceNumber,
            r"\b(?P<v>\d{3}[ \-]\d{3}[ \-]\d{3})\b",
            Some(checks::ca_sin),
            Validated,
        ),
        r(
            CaSocialInsuranceNumber,
            r"(?i)\b(?:sin|social insurance(?: number)?)\s*(?:is|:|#|=)?\s*(?P<v>\d{9})\b",
            Some(checks::ca_sin),
            Context,
        ),
        r(
            CaHealthNumber,
            r"(?i)\b(?:health\s+(?:card|number|insurance number)|ohip|phn|carte soleil)(?:\s+(?:number|no\.?|#))?\s*(?:is|:|#|=)?\s*(?P<v>\d{4}[ \-]?\d{3}[ \-]?\d{3}(?:[ \-]?[A-Z]{2})?|\d{10})\b",
            None,
            Context,
        ),
        r(
            Age,
            r"(?i)\b(?P<v>\d{1,3})[\s\-]*(?:years?|yrs?)[\s\-]*old\b",
            Some(plausible_age),
            Context,
        ),
        r(
            Age,
            r"(?i)\b(?:aged?|age\s+is|age\s*:|i\s+am|i'm)\s+(?P<v>\d{1,3})\b(?:\s*(?:years|yrs|y/o|yo)\b)?",
            Some(plausible_age),
            Context,
        ),
        r(
            Password,
            r#"(?i)\b(?:password|passwd|pwd|passphrase|passcode)\s*(?:is|:|=|was)?\s*["']?(?P<v>[^\s"']{4,64})"#,
            None,
            Context,
        ),
        r(
            Username,
            r#"(?i)\b(?:user\s?name|user\s?id|login|handle|screen\s?name)\s*(?:is|:|=)?\s*["']?(?P<v>@?[a-z0-9][a-z0-9._\-]{2,31})"#,
            Some(not_common_word),
            Context,
        ),
        r(
            Username,
            r"(?:^|[\s(])(?P<v>@[A-Za-z0-9_]{3,30})\b",
            None,
            Pattern,
        ),
        r(Address, ADDRESS, None, Pattern),
        r(
            Address,
            r"\b(?P<v>(?:Via|Viale|Piazza|Corso|Largo|Strada|Rue|Chemin|Quai|Calle|Carrer|Avenida|Rua|Travessa|Paseo|Plaza|Ulica|Allee|Boulevard)\s+(?:\p{Lu}[\p{Ll}\p{M}'\-]*\.?\s+){0,4}\p{Lu}[\p{Ll}\p{M}'\-]*(?:,?\s+\d{1,5}[A-Za-z]?)?)",
            None,
            Pattern,
        ),
        r(
            Address,
            r"(?i)\b(?P<v>(?-i:\p{Lu})[\p{Ll}\p{M}]*(?:straße|strasse|gasse|weg|gade|vej|gatan|vägen|veien|vei|veg|gata|laan|straat|plein|utca|katu|tie)\s+\d{1,5}[A-Za-z]?)\b",
            None,
            Pattern,
        ),
        r(
            Phone,
            r"(?i)\b(?:call(?:\s+me)?(?:\s+(?:on|at))?|phone(?:\s+number)?|tel(?:ephone)?\.?|mobile(?:\s+number)?|cell(?:phone)?|fax|desk|reach\s+(?:me|us)\s+(?:on|at)|contact\s+(?:me|us)\s+(?:on|at)|contact\s+number|ring\s+(?:me\s+)?on|text\s+me\s+(?:on|at)|whatsapp|dial|answering\s+at)\s*(?:is|:|#|=|no\.?)?\s*(?P<v>\+?\(?\d[\d\s().\-]{5,18}\d)",
            Some(phone_digits),
            Context,
        ),
        r(
            Age,
            r"(?i)\b(?:turned|turns|turning|turn|age\s+of)\s+(?P<v>\d{1,3})\b",
            Some(plausible_age),
            Context,
        ),
        r(
            Phone,
            r"(?:^|[^\w(])(?P<v>\(\d{3}\)\s?\d{3}-\d{4}|\d{3}-\d{3}-\d{4})\b",
            None,
            Pattern,
        ),
        r(
            Address,
            r"\b(?P<v>(?:Suite|Apt\.?|Apartment|Unit)\s+\d{1,5}[A-Z]?)\b",
            None,
            Pattern,
        ),
        r(
            Age,
            r"(?i)\b(?:he|she|they|i|you|we)\s+(?:was|is|am|were|are)\s+(?P<v>\d{1,3})(?:\s*(?:years?|yrs?)(?:\s+old)?)?(?:$|[.,;!?)]|\s+(?:and|but|when|yesterday|today|now|last|this|in)\b)",
            Some(plausible_age),
            Context,
        ),
    ]
});

const ADDRESS: &str = r"(?x)
    \b(?P<v>
      \d{1,6}[A-Za-z]?\s+
      (?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?\s+)?
      (?:[A-Z][a-z]+\.?\s+|\d{1,3}(?:st|nd|rd|th)\s+){1,4}
      (?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Crescent|Close|Row|Alley|Loop|Plaza|Walk|Gardens|Grove|Mews|Hill|Park)\b\.?
      (?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|\#)\.?\s*[A-Za-z0-9\-]+)?
      (?:,\s*[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,3})?
      (?:,?\s+(?:[A-Z]{2}|[A-Z][a-z]+)\.?)?
      (?:,?\s+\d{5}(?:-\d{4})?)?
    )";

fn has_digit(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
}

fn phone_digits(s: &str) -> bool {
    (7..=15).contains(&s.chars().filter(char::is_ascii_digit).count())
}

fn plausible_age(s: &str) -> bool {
    s.parse::<u32>().is_ok_and(|n| n <= 125)
}

fn nino_prefix(s: &str) -> bool {
    let prefix: String = s.chars().take(2).collect();
    !["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"].contains(&prefix.as_str())
}

/// Ten digits in NHS 3-3-4 form with a valid check digit. A bare ten-digit run is
/// more often a phone number, so one without separators needs the check digit and
/// is resolved against PHONE by strength (both validated; the longer wins, then the
/// earlier recognizer).
fn nhs_with_spacing(s: &str) -> bool {
    checks::nhs_number(s)
}

fn not_common_word(s: &str) -> bool {
    !matches!(
        s.to_ascii_lowercase().as_str(),
        "and" | "the" | "for" | "was" | "with" | "name" | "details" | "page" | "screen" | "form"
    )
}

static PHONE_INTERNATIONAL: LazyLock<Regex> =
    LazyLock::new(|| rx(r"(?:^|[^\w+])(?P<v>\+\d{1,3}(?:[\s.\-]?\(?\d{1,5}\)?){2,6})(?:$|[^\w])"));

static PHONE_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    rx(
        r"(?:^|[^\w+(])(?P<v>(?:(?:\+|00)\d{1,3}[\s.\-]?|\d{1,3}[\s.\-])?\(?\d{2,4}\)?[\s.\-]?\d{2,4}[\s.\-]?\d{2,5}(?:[\s.\-]?\d{1,4})?(?:\s*(?:x|ext\.?)\s*\d{1,5})?)(?:$|[^\w])",
    )
});

fn phone_matches(text: &str, out: &mut Vec<(PiiMatch, Strength)>) {
    for caps in PHONE_CANDIDATE
        .captures_iter(text)
        .chain(PHONE_INTERNATIONAL.captures_iter(text))
    {
        let Some(m) = caps.name("v") else { continue };
        let candidate = m.as_str().trim();
        let digit_count = candidate.chars().filter(char::is_ascii_digit).count();
        if !(7..=15).contains(&digit_count) {
            continue;
        }
        let region = if candidate.starts_with('+') || candidate.starts_with("00") {
            None
        } else {
            Some(phonenumber::country::Id::US)
        };
        let normalized = candidate.strip_prefix("00").map(|rest| format!("+{rest}"));
        let parsed = phonenumber::parse(region, normalized.as_deref().unwrap_or(candidate));
        let valid = parsed.as_ref().is_ok_and(phonenumber::is_valid);
        if valid {
            let offset = m.as_str().find(candidate).unwrap_or(0);
            out.push((
                PiiMatch {
                    kind: PiiType::Phone,
                    start: m.start() + offset,
                    end: m.start() + offset + candidate.len(),
                },
                Strength::Validated,
            ));
        }
    }
}

/// Finds entities of the wanted types in `text`, non-overlapping, in text order.
pub fn detect(text: &str, wanted: &[PiiType]) -> Vec<PiiMatch> {
    let mut candidates: Vec<(PiiMatch, Strength)> = Vec::new();
    // Numbers without a country code are read as North American (NANP) numbers.
    for recognizer in RECOGNIZERS.iter().filter(|r| wanted.contains(&r.kind)) {
        for caps in recognizer.pattern.captures_iter(text) {
            let Some(m) = caps.name("v").or_else(|| caps.get(0)) else {
                continue;
            };
            if recognizer.validate.is_some_and(|valid| !valid(m.as_str())) {
                continue;
            }
            candidates.push((
                PiiMatch {
                    kind: recognizer.kind,
                    start: m.start(),
                    end: m.end(),
                },
                recognizer.strength,
            ));
        }
    }
    if wanted.contains(&PiiType::Phone) {
        phone_matches(text, &mut candidates);
    }
    if wanted.contains(&PiiType::Name) {
        for (start, end, strong) in names::find(text) {
            let strength = if strong {
                Strength::Context
            } else {
                Strength::Pattern
            };
            candidates.push((
                PiiMatch {
                    kind: PiiType::Name,
                    start,
                    end,
                },
                strength,
            ));
        }
    }
    resolve_overlaps(candidates)
}

/// Keeps the strongest, then longest, of overlapping candidates.
fn resolve_overlaps(mut candidates: Vec<(PiiMatch, Strength)>) -> Vec<PiiMatch> {
    candidates.sort_by(|(a, sa), (b, sb)| {
        sb.cmp(sa)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<PiiMatch> = Vec::new();
    for (candidate, _) in candidates {
        if kept
            .iter()
            .all(|k| candidate.end <= k.start || candidate.start >= k.end)
        {
            kept.push(candidate);
        }
    }
    kept.sort_by_key(|m| m.start);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str, kind: PiiType) -> Vec<String> {
        detect(text, &PiiType::ALL)
            .into_iter()
            .filter(|m| m.kind == kind)
            .map(|m| text[m.start..m.end].to_string())
            .collect()
    }

    #[test]
    fn every_type_has_a_positive_case() {
        use PiiType::*;
        let cases: &[(PiiType, &str, &str)] = &[
            (
                Email,
                "write to jane.doe@example.com today",
                "jane.doe@example.com",
            ),
            (Phone, "call me at (415) 555-2671 tonight", "(415) 555-2671"),
            (Phone, "or +44 20 7946 0958 in London", "+44 20 7946 0958"),
            (
                Address,
                "I live at 221 Baker Street, London",
                "221 Baker Street, London",
            ),
            (Age, "my son is 12 years old", "12"),
            (
                Name,
                "Hello, my name is Maria Gonzalez and I need help",
                "Maria Gonzalez",
            ),
            (Name, "Please forward this to John Smith.", "John Smith"),
            (Username, "my username is jdoe_88 on the forum", "jdoe_88"),
            (Password, "the password: Hunter2!x", "Hunter2!x"),
            (DriverId, "driver's license number D1234567", "D1234567"),
            (LicensePlate, "license plate 7ABC123", "7ABC123"),
            (
                VehicleIdentificationNumber,
                "VIN 1M8GDM9AXKP042788",
                "1M8GDM9AXKP042788",
            ),
            (
                CreditDebitCardNumber,
                "card 4111 1111 1111 1111 please",
                "4111 1111 1111 1111",
            ),
            (CreditDebitCardCvv, "CVV: 123", "123"),
            (CreditDebitCardExpiry, "expiry 09/27", "09/27"),
            (Pin, "my PIN is 4821", "4821"),
            (
                InternationalBankAccountNumber,
                "IBAN GB82 WEST 1234 5698 7654 32.",
                "GB82 WEST 1234 5698 7654 32",
            ),
            (SwiftCode, "SWIFT code DEUTDEFF", "DEUTDEFF"),
            (IpAddress, "from 203.0.113.42 yesterday", "203.0.113.42"),
            (
                IpAddress,
                "v6 2001:db8::ff00:42:8329 here",
                "2001:db8::ff00:42:8329",
            ),
            (MacAddress, "mac 00:1A:2B:3C:4D:5E", "00:1A:2B:3C:4D:5E"),
            (
                Url,
                "see https://example.com/a?b=c.",
                "https://example.com/a?b=c",
            ),
            (
                AwsAccessKey,
                "key AKIAIOSFODNN7EXAMPLE",
                "AKIAIOSFODNN7EXAMPLE",
            ),
            (
                AwsSecretKey,
                "aws secret access key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            (
                UsBankAccountNumber,
                "account number 12345678901",
                "12345678901",
            ),
            (UsBankRoutingNumber, "routing number 011000015", "011000015"),
            (
                UsIndividualTaxIdentificationNumber,
                "ITIN 912-70-1234",
                "912-70-1234",
            ),
            (UsPassportNumber, "passport number 340020013", "340020013"),
            (UsSocialSecurityNumber, "SSN 123-45-6789", "123-45-6789"),
            (
                CaHealthNumber,
                "health card number 1234-567-890-AB",
                "1234-567-890-AB",
            ),
            (CaSocialInsuranceNumber, "SIN 046 454 286", "046 454 286"),
            (
                UkNationalHealthServiceNumber,
                "NHS number 943 476 5919",
                "943 476 5919",
            ),
            (
                UkNationalInsuranceNumber,
                "NI number AB 12 34 56 C",
                "AB 12 34 56 C",
            ),
            (
                UkUniqueTaxpayerReferenceNumber,
                "UTR 22345 67890",
                "22345 67890",
            ),
        ];
        let mut covered: std::collections::HashSet<PiiType> = Default::default();
        for (kind, text, expected) in cases {
            let hits = found(text, *kind);
            assert_eq!(
                hits,
                vec![expected.to_string()],
                "{} in {text:?}",
                kind.as_str()
            );
            covered.insert(*kind);
        }
        assert_eq!(covered.len(), 31, "a positive case for every type");
    }

    #[test]
    fn look_alikes_are_not_reported() {
        let cases: &[(PiiType, &str)] = &[
            (
                PiiType::CreditDebitCardNumber,
                "order 4111 1111 1111 1112 shipped",
            ),
            (
                PiiType::UsSocialSecurityNumber,
                "part 666-45-6789 and 000-12-3456",
            ),
            (
                PiiType::InternationalBankAccountNumber,
                "ref GB82 WEST 1234 5698 7654 33",
            ),
            (PiiType::IpAddress, "version 300.1.2.3 released"),
            (PiiType::Name, "The Grand Canyon is in Arizona."),
            (PiiType::Phone, "the year 2024 had 366 days"),
            (PiiType::Phone, "part 666-45-6789"),
            (PiiType::CreditDebitCardCvv, "I have 123 apples"),
            (PiiType::Address, "We walked 5 miles along the river."),
        ];
        for (kind, text) in cases {
            assert!(
                found(text, *kind).is_empty(),
                "{} in {text:?}: {:?}",
                kind.as_str(),
                found(text, *kind)
            );
        }
    }

    #[test]
    fn only_wanted_types_are_reported() {
        let text = "mail a@b.co or call (415) 555-2671";
        let hits = detect(text, &[PiiType::Email]);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].kind, PiiType::Email);
    }
}
