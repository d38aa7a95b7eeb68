//! Argv templates: which program runs for a command, with its arguments.
//!
//! Placeholders are whole arguments and the program runs without a shell,
//! so nothing in a command can inject options or shell syntax; values that
//! are empty, start with `-` or hold control characters are refused.

use crate::config::{Config, PLACEHOLDERS};
use crate::model::Command;

/// The argv for `cmd`, or why it cannot run.
pub fn argv(config: &Config, cmd: &Command) -> Result<Vec<String>, String> {
    let t = &config.executor.templates;
    let strategy = cmd.strategy.as_deref().unwrap_or("default");
    let template = t
        .get(strategy)
        .or_else(|| t.get("default"))
        .ok_or_else(|| format!("no executor template for strategy {strategy:?} and no default"))?;
    template
        .iter()
        .map(|a| match value(a, cmd) {
            None => Ok(a.clone()),
            Some(v) => checked(a, v).map(str::to_string),
        })
        .collect()
}

/// The value of `placeholder` in `cmd`, if it is one.
fn value<'c>(placeholder: &str, cmd: &'c Command) -> Option<&'c str> {
    match placeholder {
        "{service}" => Some(cmd.service.as_str()),
        "{environment}" => Some(cmd.environment.as_str()),
        "{to_version}" => Some(cmd.to_version.as_deref().unwrap_or("")),
        "{deploy_id}" => Some(cmd.deploy_id.as_str()),
        _ => None,
    }
}

/// `v`, unless it is empty, starts with `-` or holds control characters.
fn checked<'v>(placeholder: &str, v: &'v str) -> Result<&'v str, String> {
    if v.is_empty() {
        Err(format!("{placeholder} is empty in this command"))
    } else if v.starts_with('-') {
        Err(format!("{placeholder} = {v:?} starts with '-'"))
    } else if v.chars().any(char::is_control) {
        Err(format!("{placeholder} holds control characters"))
    } else {
        Ok(v)
    }
}

/// `text` with every placeholder in it replaced by its value in `cmd`
/// (the same values, refused the same way, as in argv templates); other
/// text, braces included, is kept.
pub fn fill(text: &str, cmd: &Command) -> Result<String, String> {
    let mut out = text.to_string();
    for p in PLACEHOLDERS {
        if out.contains(p) {
            let v = value(p, cmd).unwrap_or_default();
            out = out.replace(p, checked(p, v)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Trigger, COMMAND_SCHEMA};
    use crate::time::Timestamp;

    fn cmd(service: &str, to: Option<&str>, strategy: Option<&str>) -> Command {
        Command {
            schema: COMMAND_SCHEMA.into(),
            command_id: "c".into(),
            action: Action::Rollback,
            trigger: Trigger::BurnRate,
            deploy_id: "d-1".into(),
            release_id: None,
            service: service.into(),
            environment: "prod".into(),
            from_version: "v2".into(),
            to_version: to.map(String::from),
            strategy: strategy.map(String::from),
            labels: Default::default(),
            evidence: serde_json::Value::Null,
            decided_at: Timestamp(0),
            issued_at: Timestamp(0),
        }
    }

    #[test]
    fn templates_substitute_whole_arguments_and_refuse_injection() {
        let c = Config::from_toml(
            "[executor.templates]\nhelm = [\"helm\", \"rollback\", \"{service}\", \"--namespace\", \"{environment}\"]\ndefault = [\"kubectl\", \"rollout\", \"undo\", \"deployment/{service}\"]\n",
        );
        assert!(c.is_err(), "placeholders inside arguments are refused");
        let c = Config::from_toml(
            "[executor.templates]\nhelm = [\"helm\", \"rollback\", \"{service}\", \"--namespace\", \"{environment}\"]\ndefault = [\"kubectl\", \"rollout\", \"undo\", \"{service}\"]\n",
        )
        .unwrap();
        assert_eq!(
            argv(&c, &cmd("checkout", Some("v1"), Some("helm"))).unwrap(),
            ["helm", "rollback", "checkout", "--namespace", "prod"]
        );
        assert_eq!(
            argv(&c, &cmd("checkout; rm -rf /", None, Some("canary"))).unwrap(),
            ["kubectl", "rollout", "undo", "checkout; rm -rf /"],
            "one argument, no shell: harmless"
        );
        assert!(argv(&c, &cmd("--kubeconfig=/x", None, None)).is_err());
        assert!(argv(&c, &cmd("a\nb", None, None)).is_err());
        let none = Config::from_toml("").unwrap();
        assert!(argv(&none, &cmd("x", None, None)).is_err());
    }

    #[test]
    fn fill_replaces_placeholders_inside_text() {
        let c = cmd("checkout", Some("v1"), None);
        assert_eq!(
            fill("apps/{service}/{environment}/kustomization.yaml", &c).unwrap(),
            "apps/checkout/prod/kustomization.yaml"
        );
        assert_eq!(
            fill("image: shop/{service}:{version}", &c).unwrap(),
            "image: shop/checkout:{version}",
            "{{version}} is not a template placeholder"
        );
        assert!(fill("{to_version}", &cmd("x", None, None)).is_err());
        assert!(fill("{service}", &cmd("-x", None, None)).is_err());
    }
}
