//! `stor mb` and `stor rb`: make and remove buckets.

use anyhow::{bail, Result};

use super::rm::delete_under;
use crate::args::{BucketArgs, RbArgs};
use crate::context::Ctx;
use crate::exit::Exit;
use crate::urls::bucket_only;

pub async fn mb(ctx: &Ctx, a: &BucketArgs) -> Result<Exit> {
    let (scheme, bucket) = bucket_only(&a.url)?;
    ctx.store(scheme).await?.create_bucket(&bucket).await?;
    ctx.out
        .note(&format!("make_bucket: {}://{bucket}", scheme.as_str()));
    Ok(ctx.status())
}

pub async fn rb(ctx: &Ctx, a: &RbArgs) -> Result<Exit> {
    let (scheme, bucket) = bucket_only(&a.url)?;
    let store = ctx.store(scheme).await?;
    if a.force {
        delete_under(ctx, store, scheme, &bucket, "", None, false).await?;
        if ctx.out.failures() > 0 {
            bail!("some objects could not be deleted; the bucket was kept");
        }
    }
    store.delete_bucket(&bucket).await?;
    ctx.out
        .note(&format!("remove_bucket: {}://{bucket}", scheme.as_str()));
    Ok(ctx.status())
}
