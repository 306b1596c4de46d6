// Drives the running API through openapi-fetch, typed by the openapi-typescript output of
// openapi.json (src/schema.d.ts, generated, not committed). Run by tests/clients/: it prints one
// JSON object with what each call answered, and the test compares it with the server's state.
//
//   API_URL=http://127.0.0.1:8000 API_TOKEN=$(python -m app token --tenant acme) node dist/drive.js
import assert from "node:assert/strict";

import createClient from "openapi-fetch";

import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];

function env(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

/** The parsed body of a call that must answer `status`; the problem's `code` otherwise. */
function expect<T>(
  operation: string,
  status: number,
  result: { data?: T; error?: unknown; response: Response },
): T {
  assert.equal(
    result.response.status,
    status,
    `${operation} answered ${result.response.status}: ${JSON.stringify(result.error)}`,
  );
  assert.ok(result.data !== undefined, `${operation}: no parsed body`);
  return result.data;
}

const client = createClient<paths>({
  baseUrl: env("API_URL"),
  headers: { Authorization: `Bearer ${env("API_TOKEN")}` },
});

const policyBody: Schemas["PolicyCreate"] = {
  key: "spotrak",
  title: "Spotrak privacy policy",
  controller: { name: "SPOTRAK LLC", contact_email: "privacy@spotrak.com", country: "FR" },
  jurisdiction: { regime: "gdpr", country: "FR", subdivision: null, timezone: "Europe/Paris" },
  rights: ["access", "erasure", "withdraw_consent"],
  response: { default: { acknowledge_within: { value: 5, unit: "business_days" } } },
  breach: { subjects_within: { value: 72, unit: "hours" }, notify_subjects: "always" },
  consent_purposes: [
    {
      key: "audience_cookies",
      description: "Audience-measurement cookies, set only with your consent",
      lawful_basis: "consent",
      default: "denied",
    },
  ],
  change_notice: { value: 15, unit: "days" },
};

// createPolicy
const created: Schemas["PolicyRead"] = expect(
  "createPolicy",
  201,
  await client.POST("/v1/policies", {
    params: { header: { "Idempotency-Key": "ts-client-create-policy" } },
    body: policyBody,
  }),
);
assert.equal(created.key, "spotrak");
assert.equal(created.version, 1);
const changeNotice: Schemas["PeriodOut"] = created.change_notice;
assert.deepEqual(changeNotice, { value: 15, unit: "days" });

// getPolicy
const policy: Schemas["PolicyRead"] = expect(
  "getPolicy",
  200,
  await client.GET("/v1/policies/{key}", { params: { path: { key: "spotrak" } } }),
);
assert.equal(policy.version, created.version);
assert.equal(policy.in_force, true);
const breachRules: Schemas["BreachOut"] = policy.breach;
assert.deepEqual(breachRules.subjects_within, { value: 72, unit: "hours" });
assert.equal(breachRules.notify_subjects, "always");
const purpose: Schemas["ConsentPurposeOut"] | undefined = policy.consent_purposes[0];
assert.equal(purpose?.key, "audience_cookies");

// createDsar
const dsar: Schemas["DsarRead"] = expect(
  "createDsar",
  201,
  await client.POST("/v1/dsars", {
    body: {
      policy_key: "spotrak",
      type: "access",
      subject: { id: "user-8812", email: "jane@example.com" },
      received_at: "2026-11-02T09:30:00+01:00",
      channel: "email",
    },
  }),
);
const status: Schemas["DsarStatus"] = dsar.status;
assert.equal(dsar.policy_version, 1);
assert.ok(dsar.due_date !== null, "a GDPR access request has a due date");

// listDsars
const listed: Schemas["DsarList"] = expect(
  "listDsars",
  200,
  await client.GET("/v1/dsars", { params: { query: { policy_key: "spotrak", limit: 10 } } }),
);
const listedIds: string[] = listed.items.map((item: Schemas["DsarRead"]) => item.id);
assert.deepEqual(listedIds, [dsar.id]);

// recordConsentEvent
const consent: Schemas["ConsentEventCreated"] = expect(
  "recordConsentEvent",
  201,
  await client.POST("/v1/consent-events", {
    body: {
      policy_key: "spotrak",
      subject_id: "user-8812",
      purpose: "audience_cookies",
      action: "granted",
      source: "banner",
      proof: { banner_version: "2026-11" },
    },
  }),
);
const action: Schemas["ConsentAction"] = consent.action;
assert.equal(consent.became_current, true);
assert.equal(consent.gpc, false);

// createBreach
const breach: Schemas["BreachRead"] = expect(
  "createBreach",
  201,
  await client.POST("/v1/breaches", {
    body: {
      policy_key: "spotrak",
      title: "Location history exposed",
      aware_at: "2026-10-24T22:30:00+02:00",
      data_categories: ["location_history"],
      subjects_affected: 1200,
      risk: "high_risk",
    },
  }),
);
const breachStatus: Schemas["BreachStatus"] = breach.status;
assert.equal(breach.authority_notification_required, true);
assert.equal(breach.subjects_notification_required, true);

process.stdout.write(
  JSON.stringify({
    policy: { key: policy.key, version: policy.version, change_notice: changeNotice },
    dsar: { id: dsar.id, status, due_date: dsar.due_date, listed: listedIds },
    consent: { id: consent.id, action, policy_version: consent.policy_version },
    breach: {
      id: breach.id,
      status: breachStatus,
      authority_due_at: breach.authority_due_at,
      subjects_due_at: breach.subjects_due_at,
    },
  }) + "\n",
);
