//! Settlement of the assets a case lists: the user's choice for one asset
//! (refund pro rata, withdraw, transfer, forfeit, unbind), recorded with
//! the statement shown. The instruction goes to the platform when
//! cooling-off ends (`crate::worker`), or at once for the kinds the policy
//! settles early.

use axum::response::Response;
use lethe_domain::{CaseCommand, Locale, SubjectId};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::cases::CaseView;
use crate::http::extract::{ApiJson, CaseCall};
use crate::http::middleware::Principal;
use crate::http::problem::Problem;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settle {
    /// The asset's id, from the case's `assets`.
    #[schema(example = "sub-1")]
    pub asset_id: String,
    /// refund_pro_rata, withdraw, transfer, forfeit or unbind (per the asset's options).
    #[schema(value_type = String, example = "forfeit")]
    pub option: lethe_domain::asset::OptionKind,
    /// The language the statement was shown in.
    #[schema(value_type = String, example = "zh-CN")]
    pub locale: Locale,
    /// For a transfer: the platform id of the receiving account.
    #[schema(value_type = Option<String>)]
    pub transfer_to: Option<SubjectId>,
}

/// Choose how one asset is settled (or forfeit it). The statement of what
/// will happen, and when, is recorded as acknowledged. Nothing moves yet:
/// the platform receives the idempotent, signed instruction (retried until
/// it answers) when the cooling-off period ends, or at once for a kind the
/// policy settles early and for a choice made again after the platform
/// refused one. A choice not carried out yet may be changed.
#[utoipa::path(post, path = "/v1/cases/{id}/settlements", request_body = Settle, tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn settle(
    call: CaseCall<Principal>,
    ApiJson(body): ApiJson<Settle>,
) -> Result<Response, Problem> {
    let st = call.st.clone();
    let today = st.clock.now().to_zoned_datetime(st.tz.clone()).date();
    let cmd = CaseCommand::ChooseSettlement {
        asset_id: body.asset_id,
        option: body.option,
        locale: body.locale,
        instruction_id: format!("stl_{}", uuid::Uuid::now_v7().simple()),
        today,
        transfer_to: body.transfer_to,
    };
    // An instruction that is due now is enqueued with the change.
    let resp = call.apply(cmd, vec![]).await?;
    st.wake.notify_waiters();
    Ok(resp)
}
