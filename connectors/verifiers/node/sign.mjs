#!/usr/bin/env node
// Build the signed form of an event for the HCMC exchange gateway with stock libraries only:
// jose (the detached JWS), canonicalize (RFC 8785) and Node's crypto (salts, SHA-256, X.509).
// docs/envelope.md is the specification; docs/integration.md walks through this file.
//
//   node sign.mjs --agency police --key police.key.pem --cert police.crt.pem \
//     --type vn.hcm.police.resident_registered.v1 --data data.json \
//     [--id <uuid>] [--time <RFC 3339>] [--deadline <RFC 3339>] [--correlation-id <request id>]
//
// Prints one line: the record key (the event's subject), a tab, and the record value (the event
// as compact JSON). Publish the value with that key to xgw.ingress.<agency>, header
// content-type: application/cloudevents+json; charset=UTF-8.

import { createHash, createPrivateKey, randomBytes, randomUUID, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import canonicalize from "canonicalize";
import * as jose from "jose";

// The data field that names the person an event is about (x-xgw-subject-field in every schema).
const SUBJECT_FIELD = "personal_id";

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const sha256 = (bytes) => createHash("sha256").update(bytes).digest();

/** Unicode NFC everywhere: "Nguyễn" typed with combining marks is other bytes (RFC 8785 keeps them). */
function nfc(value) {
  if (typeof value === "string") return value.normalize("NFC");
  if (Array.isArray(value)) return value.map(nfc);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k.normalize("NFC"), nfc(v)]));
  }
  return value;
}

/** RFC 9901 disclosures, one per top-level field, with 128-bit salts; the sorted digests. */
function conceal(data) {
  const disclosures = Object.entries(data).map(([name, value]) =>
    b64url(Buffer.from(JSON.stringify([b64url(randomBytes(16)), name, value]), "utf8")),
  );
  const digests = disclosures.map((d) => b64url(sha256(Buffer.from(d, "ascii"))));
  // Code-point order (plain byte order for base64url text): hides the order of the fields.
  digests.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { signed: { _sd: digests, _sd_alg: "sha-256" }, disclosures };
}

/** RFC 3339 with microseconds in UTC, as the gateway writes it (any RFC 3339 form is accepted). */
const rfc3339 = (date) => date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

export async function sign({ agency, keyPem, certPem, type, data, id, time, deadline, correlationId }) {
  const fields = nfc(data);
  if (typeof fields[SUBJECT_FIELD] !== "string") {
    throw new Error(`the data has no ${SUBJECT_FIELD} string`);
  }
  const { signed, disclosures } = conceal(fields);
  const event = {
    specversion: "1.0",
    id: id ?? randomUUID(),
    source: `urn:hcm:agency:${agency}`,
    type,
    subject: `sha256:${b64url(sha256(Buffer.from(`vn-person:${fields[SUBJECT_FIELD]}`, "utf8")))}`,
    time: time ?? rfc3339(new Date()),
    datacontenttype: "application/json",
    data: signed,
  };
  if (deadline) event.xgwdeadline = deadline;
  if (correlationId) event.correlationid = correlationId;
  // The signed bytes: every attribute so far (not xgwsig, not xgwdisclosures), canonical.
  const payload = Buffer.from(canonicalize(event), "utf8");
  const certificate = new X509Certificate(certPem);
  const thumbprint = b64url(sha256(certificate.raw));
  const key = createPrivateKey(keyPem);
  const alg = key.asymmetricKeyType === "ed25519" ? "Ed25519" : "ES256";
  const token = await new jose.CompactSign(payload)
    .setProtectedHeader({ alg, kid: thumbprint, "x5t#S256": thumbprint })
    .sign(key);
  const [header, , signature] = token.split(".");
  event.xgwsig = `${header}..${signature}`; // detached (RFC 7515 appendix F)
  event.xgwdisclosures = disclosures.join("~");
  return { key: event.subject, value: JSON.stringify(event) };
}

async function main() {
  const { values } = parseArgs({
    options: {
      agency: { type: "string" },
      key: { type: "string" },
      cert: { type: "string" },
      type: { type: "string" },
      data: { type: "string" },
      id: { type: "string" },
      time: { type: "string" },
      deadline: { type: "string" },
      "correlation-id": { type: "string" },
    },
  });
  for (const name of ["agency", "key", "cert", "type", "data"]) {
    if (!values[name]) throw new Error(`--${name} is required`);
  }
  const { key, value } = await sign({
    agency: values.agency,
    keyPem: readFileSync(values.key, "utf8"),
    certPem: readFileSync(values.cert),
    type: values.type,
    data: JSON.parse(readFileSync(values.data, "utf8")),
    id: values.id,
    time: values.time,
    deadline: values.deadline,
    correlationId: values["correlation-id"],
  });
  process.stdout.write(`${key}\t${value}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error) => {
    console.error(`error: ${error.message}`);
    process.exit(2);
  });
}
