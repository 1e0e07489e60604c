//! `stor config show`: the effective config, secrets masked, and where it came
//! from.

use anyhow::Result;

use crate::context::Ctx;
use crate::exit::Exit;

/// The effective config as `{"storageConfig": {...}}`, secrets masked, with where
/// it came from: `config_file`, the file's `stor_profile`, and `credentials_source`
/// (decided without network: "environment (AWS_ACCESS_KEY_ID)", "profile prod
/// (~/.aws/credentials)", "config file …").
pub async fn show(ctx: &Ctx) -> Result<Exit> {
    let base = ctx.config();
    let mut v = serde_json::to_value(base)?;
    if let Some(m) = v.as_object_mut() {
        for k in ["aws_secret_access_key", "aws_session_token"] {
            if m.get(k).is_some_and(|x| !x.is_null()) {
                m.insert(k.into(), "***".into());
            }
        }
        if let Some(url) = base.endpoint_url.as_deref() {
            m.insert("endpoint_url".into(), stor::config::redact_url(url).into());
        }
        if let Some(id) = base.aws_access_key_id.as_deref() {
            m.insert(
                "aws_access_key_id".into(),
                stor::config::mask_key_id(id).into(),
            );
        }
        m.insert(
            "local_root".into(),
            base.resolved_local_root().display().to_string().into(),
        );
    }
    let mut credentials = stor::credentials::describe(base).await?;
    if let (Some(p), Some(_)) = (ctx.stor_profile(), &base.aws_access_key_id) {
        credentials.push_str(&format!(", profile {p}"));
    }
    ctx.out
        .say_block(&serde_json::to_string_pretty(&serde_json::json!({
            "storageConfig": v,
            "config_file": base.config_file,
            "stor_profile": ctx.stor_profile(),
            "credentials_source": credentials,
        }))?);
    Ok(ctx.status())
}
