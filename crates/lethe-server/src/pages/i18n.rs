//! The pages' texts in zh-CN (the default) and English, from the Fluent
//! files `locales/zh-CN.ftl` and `locales/en.ftl` (compiled into the
//! binary; a translator edits them without a Rust toolchain). A key without
//! a text shows as itself; tests check that both files parse, hold the same
//! keys, and that every key is used and every key used exists.

use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("en") || s.to_ascii_lowercase().starts_with("en-") {
            Self::En
        } else {
            Self::Zh
        }
    }
    pub fn tag(self) -> &'static str {
        match self {
            Self::Zh => "zh-CN",
            Self::En => "en",
        }
    }
    pub fn locale(self) -> lethe_domain::Locale {
        match self {
            Self::Zh => lethe_domain::Locale::ZhCn,
            Self::En => lethe_domain::Locale::En,
        }
    }
}

/// Every key (for the test that each is used).
#[cfg(test)]
pub fn keys() -> Vec<&'static str> {
    ZH.keys().map(String::as_str).collect()
}

/// The text of `key` in `lang`, or the key itself.
pub fn text(lang: Lang, key: &str) -> &str {
    let texts = match lang {
        Lang::Zh => &*ZH,
        Lang::En => &*EN,
    };
    texts.get(key).map_or(key, String::as_str)
}

const ZH_FTL: &str = include_str!("../../locales/zh-CN.ftl");
const EN_FTL: &str = include_str!("../../locales/en.ftl");

static ZH: LazyLock<HashMap<String, String>> = LazyLock::new(|| load("zh-CN", ZH_FTL).texts);
static EN: LazyLock<HashMap<String, String>> = LazyLock::new(|| load("en", EN_FTL).texts);

/// One Fluent file read into keys and texts.
struct Loaded {
    texts: HashMap<String, String>,
    /// What the parser or this reader refused (logged when read; a test
    /// keeps it empty).
    #[cfg_attr(not(test), allow(dead_code))]
    errors: Vec<String>,
}

/// Reads a Fluent file: each attribute of a message is one text, its key
/// the message id (`-` read as `.`) and the attribute's name: message
/// `event-case`, attribute `.approved` is `event.case.approved`. A variable
/// `{ $n }` becomes `{n}`, which the pages fill in; a string literal
/// (`{" "}`) is its text. What cannot be read is left out (its key shows as
/// itself) and reported, never a panic: the files are part of the binary
/// and tested.
fn load(lang: &str, src: &str) -> Loaded {
    use fluent_syntax::ast;
    let (resource, mut errors) = match fluent_syntax::parser::parse(src) {
        Ok(r) => (r, vec![]),
        Err((r, errs)) => (
            r,
            errs.iter()
                .map(|e| format!("{lang}.ftl: {:?} at bytes {:?}", e.kind, e.pos))
                .collect(),
        ),
    };
    let mut texts = HashMap::new();
    for entry in resource.body {
        let ast::Entry::Message(m) = entry else {
            continue;
        };
        let group = m.id.name.replace('-', ".");
        if m.value.is_some() {
            errors.push(format!(
                "{lang}.ftl: {} has a value; texts are attributes",
                m.id.name
            ));
        }
        for attr in m.attributes {
            let key = format!("{group}.{}", attr.id.name);
            let mut text = String::new();
            for el in attr.value.elements {
                match el {
                    ast::PatternElement::TextElement { value } => text.push_str(value),
                    ast::PatternElement::Placeable {
                        expression:
                            ast::Expression::Inline(ast::InlineExpression::VariableReference { id }),
                    } => {
                        text.push('{');
                        text.push_str(id.name);
                        text.push('}');
                    }
                    ast::PatternElement::Placeable {
                        expression:
                            ast::Expression::Inline(ast::InlineExpression::StringLiteral { value }),
                    } => text.push_str(value),
                    ast::PatternElement::Placeable { .. } => {
                        errors.push(format!(
                            "{lang}.ftl: {key} uses a placeable the pages cannot fill"
                        ));
                    }
                }
            }
            if texts.insert(key.clone(), text).is_some() {
                errors.push(format!("{lang}.ftl: {key} is there twice"));
            }
        }
    }
    for e in &errors {
        tracing::error!(error = %e, "a page text file has a fault");
    }
    Loaded { texts, errors }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_parse_and_hold_the_same_keys() {
        let (zh, en) = (load("zh-CN", ZH_FTL), load("en", EN_FTL));
        assert!(zh.errors.is_empty(), "{:?}", zh.errors);
        assert!(en.errors.is_empty(), "{:?}", en.errors);
        for (k, v) in &zh.texts {
            assert!(!v.trim().is_empty(), "zh-CN: {k} is empty");
            assert!(
                en.texts.contains_key(k),
                "{k} is in zh-CN.ftl, not in en.ftl"
            );
        }
        for (k, v) in &en.texts {
            assert!(!v.trim().is_empty(), "en: {k} is empty");
            assert!(
                zh.texts.contains_key(k),
                "{k} is in en.ftl, not in zh-CN.ftl"
            );
        }
        for s in lethe_domain::CaseState::ALL {
            for prefix in ["state", "next"] {
                let key = format!("{prefix}.{}", s.as_str());
                assert_ne!(text(Lang::En, &key), key);
            }
        }
        assert_eq!(text(Lang::Zh, "no.such"), "no.such");
        assert_eq!(Lang::parse("en-GB"), Lang::En);
        assert_eq!(Lang::parse("zh-CN"), Lang::Zh);
        // Placeholders and kept spaces come through as the pages expect.
        assert_eq!(text(Lang::En, "retain.for"), "{n} days");
        assert_eq!(text(Lang::Zh, "verify.hint"), "验证码 ");
        assert_eq!(text(Lang::En, "verify.hint_end"), " minutes.");
        assert!(text(Lang::En, "tr.threshold_hint").contains("\"< {n}\""));
    }

    #[test]
    fn a_fault_in_a_file_is_reported_and_loses_only_its_text() {
        let l = load(
            "xx",
            "a =\n    .ok = fine\n    .bad = { -term }\nb = a value\n  !!\n",
        );
        assert_eq!(l.texts.get("a.ok").map(String::as_str), Some("fine"));
        assert!(l.errors.len() >= 2, "{:?}", l.errors);
    }
}
