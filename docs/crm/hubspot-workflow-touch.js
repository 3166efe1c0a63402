// sla-guard: a HubSpot workflow "Custom code" action (Node.js 20) that reports a call or a
// meeting logged on the enrolled deal (or contact) to sla-guard's generic webhook, as a touch.
//
// Workflow: deal-based (or contact-based), enrolment trigger "Last contacted is known",
// re-enrolment on "Last contacted" (HubSpot sets it whenever a call, meeting or sales e-mail is
// logged on the record). Action: Custom code, language Node.js 20.x.
//   Secrets:             SLA_GUARD_URL             (https://sla.example.com)
//                        SLA_GUARD_WEBHOOK_SECRET  (the same value as sla-guard's setting)
//   Properties to include in code: notes_last_contacted, hubspot_owner_id
// See docs/crm/hubspot.md, "Calls and meetings through a workflow", for the payload mapping.
const crypto = require("crypto");

exports.main = async (event, callback) => {
  const kind = String(event.object.objectType || "DEAL").toLowerCase(); // "deal" or "contact"
  const recordId = String(event.object.objectId);
  const raw = String(event.inputFields.notes_last_contacted || "");
  const contactedAt = /^\d+$/.test(raw) ? new Date(Number(raw)) : new Date(raw);
  if (Number.isNaN(contactedAt.getTime())) {
    callback({ outputFields: { sla_guard_status: "no last contacted date" } });
    return;
  }
  const owner = event.inputFields.hubspot_owner_id ? String(event.inputFields.hubspot_owner_id) : undefined;
  const touch = {
    event_id: `hubspot-workflow-${kind}-${recordId}-${contactedAt.getTime()}`,
    type: "lead.touched",
    occurred_at: contactedAt.toISOString(),
    lead: { id: `hubspot:${kind}:${recordId}` },
    touch: { channel: "call_or_meeting", by: owner },
  };
  const body = JSON.stringify(touch);
  const t = Math.floor(Date.now() / 1000);
  const v1 = crypto.createHmac("sha256", process.env.SLA_GUARD_WEBHOOK_SECRET).update(`${t}.${body}`).digest("hex");
  const response = await fetch(`${process.env.SLA_GUARD_URL.replace(/\/+$/, "")}/webhooks/generic`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-SLA-Guard-Signature": `t=${t},v1=${v1}` },
    body,
  });
  if (response.status >= 500 || response.status === 429) {
    // HubSpot retries a custom code action that throws (for up to three days)
    throw new Error(`sla-guard answered ${response.status}; HubSpot will retry`);
  }
  callback({ outputFields: { sla_guard_status: String(response.status) } });
};
