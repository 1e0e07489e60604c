//! `stor versioning s3://BUCKET [enable|suspend]`: a bucket's versioning state,
//! or turning it on (and off again).

use anyhow::Result;
use stor::Versioning;

use crate::args::{VersioningAction, VersioningArgs};
use crate::context::Ctx;
use crate::exit::Exit;
use crate::urls::bucket_only;

pub async fn versioning(ctx: &Ctx, a: &VersioningArgs) -> Result<Exit> {
    let (scheme, bucket) = bucket_only(&a.url)?;
    let store = ctx.store(scheme).await?;
    if let Some(action) = a.action {
        let enabled = matches!(action, VersioningAction::Enable);
        store.set_versioning(&bucket, enabled).await?;
    }
    let state = match store.versioning(&bucket).await? {
        Versioning::Enabled => "enabled",
        Versioning::Suspended => "suspended",
        Versioning::Unversioned => "unversioned",
    };
    ctx.out.say(&format!(
        "{}://{bucket}: versioning {state}",
        scheme.as_str()
    ));
    Ok(ctx.status())
}
