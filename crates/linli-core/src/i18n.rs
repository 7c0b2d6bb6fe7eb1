//! Localized text. Every user-visible string lives in `locales/{zh-CN,en}/*.ftl`; 简体中文 first.
//!
//! Error codes such as `registry.person.not_found` map to Fluent ids by replacing `.` with `-`
//! (Fluent ids may not contain dots).

use std::borrow::Cow;
use std::collections::HashMap;

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{Loader, static_loader};
use unic_langid::{LanguageIdentifier, langid};

static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "zh-CN",
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

static ZH: LanguageIdentifier = langid!("zh-CN");
static EN: LanguageIdentifier = langid!("en");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Lang {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Lang {
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Lang> {
        let t = tag.trim().to_ascii_lowercase();
        if t.starts_with("zh") {
            Some(Lang::ZhCn)
        } else if t.starts_with("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// Pick from an `Accept-Language` header by quality; Chinese when nothing matches.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("");
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::from_tag(tag)
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or_default()
    }

    fn id(self) -> &'static LanguageIdentifier {
        match self {
            Lang::ZhCn => &ZH,
            Lang::En => &EN,
        }
    }
}

/// Fluent id for a dotted code.
pub fn fluent_id(code: &str) -> String {
    code.replace('.', "-")
}

/// Translate a dotted code (or Fluent id); unknown ids come back as the code itself so a missing
/// translation is visible rather than silent.
pub fn t(lang: Lang, code: &str) -> String {
    LOCALES
        .try_lookup(lang.id(), &fluent_id(code))
        .unwrap_or_else(|| code.to_string())
}

/// Translate with named arguments.
pub fn t_args(lang: Lang, code: &str, args: &[(&'static str, String)]) -> String {
    let map: HashMap<Cow<'static, str>, FluentValue> = args
        .iter()
        .map(|(k, v)| (Cow::Borrowed(*k), FluentValue::from(v.clone())))
        .collect();
    LOCALES
        .try_lookup_with_args(lang.id(), &fluent_id(code), &map)
        .unwrap_or_else(|| code.to_string())
}

/// Translate with arguments from a JSON object (stored notices): strings stay strings, numbers
/// become Fluent numbers (so plural rules apply), anything else is shown as JSON text.
pub fn t_json(lang: Lang, code: &str, args: &serde_json::Value) -> String {
    let mut map: HashMap<Cow<'static, str>, FluentValue> = HashMap::new();
    if let Some(obj) = args.as_object() {
        for (k, v) in obj {
            let fv = match v {
                serde_json::Value::String(s) => FluentValue::from(s.clone()),
                serde_json::Value::Number(n) => FluentValue::from(n.as_f64().unwrap_or_default()),
                other => FluentValue::from(other.to_string()),
            };
            map.insert(Cow::Owned(k.clone()), fv);
        }
    }
    LOCALES
        .try_lookup_with_args(lang.id(), &fluent_id(code), &map)
        .unwrap_or_else(|| code.to_string())
}

/// True when a translation exists in this language (used by tests and the key-parity check).
pub fn has(lang: Lang, code: &str) -> bool {
    LOCALES.try_lookup(lang.id(), &fluent_id(code)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(dir: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let path = format!("{}/locales/{dir}", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(path).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines() {
                if let Some((id, _)) = line.split_once(" =")
                    && !id.starts_with([' ', '#', '.', '-'])
                    && !id.is_empty()
                {
                    out.insert(id.trim().to_string());
                }
            }
        }
        out
    }

    #[test]
    fn both_locales_have_the_same_keys() {
        let zh = keys("zh-CN");
        let en = keys("en");
        assert!(!zh.is_empty());
        let only_zh: Vec<_> = zh.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&zh).collect();
        assert!(
            only_zh.is_empty() && only_en.is_empty(),
            "zh-only {only_zh:?}, en-only {only_en:?}"
        );
    }

    #[test]
    fn lookup_and_accept_language() {
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9"), Lang::En);
        assert_eq!(
            Lang::from_accept_language("fr, en;q=0.5, zh-CN;q=0.8"),
            Lang::ZhCn
        );
        assert_eq!(Lang::from_accept_language(""), Lang::ZhCn);
        assert_eq!(t(Lang::En, "auth.login_failed"), "Wrong login or password.");
        assert!(t(Lang::ZhCn, "auth.login_failed").contains("密码"));
    }
}
