#!/usr/bin/env node
// Verify HCMC exchange gateway deliveries and receipts with stock libraries only:
// jose (JWS), canonicalize (RFC 8785), @peculiar/x509 (the CRL) and Node's crypto (X.509, SHA-256).
// None of the gateway's own code is used. docs/envelope.md is the specification; docs/verifiers.md
// explains this file.
//
//   node verify.mjs <vectors directory>      # checks every case of its manifest.json
//
// Prints one line per case and exits 1 if any case does not end as the manifest expects.

import { createHash, webcrypto, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

import * as x509 from "@peculiar/x509";
import canonicalize from "canonicalize";
import * as jose from "jose";

x509.cryptoProvider.set(webcrypto);

const GATEWAY_URI = "urn:hcm:xgw:gateway";
const AGENCY_PREFIX = "urn:hcm:agency:";
const STAMP_ATTRIBUTES = ["xgwstamp", "xgwstampproof"];
// Not covered by the origin's signature (docs/envelope.md, "The origin signature").
const UNSIGNED = new Set([
  "xgwsig", "xgwdisclosures", "xgwrecipient", "xgwpurpose", "xgwlegalbasis", "xgwsignercert",
  ...STAMP_ATTRIBUTES,
]);

/** A refusal with the reason code the gateway's agency client would give. */
class Refused extends Error {
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.reason = reason;
  }
}

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const unb64url = (text) => {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Refused("bad_signature", "not base64url");
  return Buffer.from(text, "base64url");
};
const sha256 = (bytes) => createHash("sha256").update(bytes).digest();
const without = (event, names) =>
  Object.fromEntries(Object.entries(event).filter(([name]) => !names.has(name)));

/** The exchange's trust anchor and CRL, at the moment the manifest names. */
class Exchange {
  constructor(rootPem, crlPem, at) {
    this.root = new X509Certificate(rootPem);
    this.crl = new x509.X509Crl(crlPem);
    this.at = at;
  }

  async check() {
    const root = new x509.X509Certificate(this.root.raw);
    if (!(await this.crl.verify({ publicKey: await root.publicKey.export() }))) {
      throw new Error("the CRL is not signed by the root");
    }
    if (this.crl.thisUpdate > this.at || (this.crl.nextUpdate && this.crl.nextUpdate < this.at)) {
      throw new Error("the CRL is not current");
    }
  }

  /** The public key of a base64 DER certificate issued by the root to `uri`, valid and unrevoked. */
  key(certificateBase64, uri, why) {
    const der = Buffer.from(certificateBase64, "base64");
    const certificate = new X509Certificate(der);
    if (!certificate.checkIssued(this.root) || !certificate.verify(this.root.publicKey)) {
      throw new Refused("untrusted_certificate", `${why}: not issued by the exchange root`);
    }
    if (new Date(certificate.validFrom) > this.at || new Date(certificate.validTo) < this.at) {
      throw new Refused(new Date(certificate.validFrom) > this.at ? "certificate_not_yet_valid" : "certificate_expired", `${why}: not valid at ${this.at.toISOString()}`);
    }
    if (certificate.ca) throw new Refused("untrusted_certificate", `${why}: a CA certificate`);
    if (this.crl.findRevoked(certificate.serialNumber.toLowerCase())) {
      throw new Refused("revoked_certificate", `${why}: revoked`);
    }
    const uris = (certificate.subjectAltName ?? "").split(", ").filter((n) => n.startsWith("URI:"));
    if (uris.length !== 1 || uris[0] !== `URI:${uri}`) {
      throw new Refused("signer_agency_mismatch", `${why}: the certificate does not name ${uri}`);
    }
    return { key: certificate.publicKey, thumbprint: b64url(sha256(der)) };
  }
}

/** RFC 9162 2.1.3.2: the root from a leaf hash and `<index>.<size>.<hash>...`. */
function rootOf(leafHash, proof, signedSize) {
  const [indexText, sizeText, ...hashes] = proof.split(".");
  const decimal = /^(0|[1-9][0-9]*)$/;
  if (!decimal.test(indexText) || !decimal.test(sizeText)) {
    throw new Refused("bad_signature", "xgwstampproof: index and size must be decimals");
  }
  let fn = Number(indexText);
  let sn = Number(sizeText) - 1;
  if (sn + 1 !== signedSize || fn > sn) {
    throw new Refused("bad_signature", "xgwstampproof: not a leaf of the signed tree");
  }
  let r = leafHash;
  for (const text of hashes) {
    const p = unb64url(text);
    if (p.length !== 32 || b64url(p) !== text || sn === 0) {
      throw new Refused("bad_signature", "xgwstampproof: bad audit path");
    }
    if (fn & 1 || fn === sn) {
      r = sha256(Buffer.concat([Buffer.of(1), p, r]));
      while (fn !== 0 && !(fn & 1)) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      r = sha256(Buffer.concat([Buffer.of(1), r, p]));
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn !== 0) throw new Refused("bad_signature", "xgwstampproof: audit path too short");
  return r;
}

function header(token) {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[1] !== "") {
    throw new Refused("bad_signature", "not a detached compact JWS");
  }
  return { protectedHeader: parts[0], signature: parts[2], fields: JSON.parse(unb64url(parts[0])) };
}

async function verifyJws(jws, payload, key, options) {
  try {
    await jose.flattenedVerify(
      { protected: jws.protectedHeader, payload: b64url(payload), signature: jws.signature },
      key,
      options,
    );
  } catch (error) {
    throw new Refused("bad_signature", `${options.what} does not verify (${error.code ?? error.message})`);
  }
}

/** The stamp: the gateway's signature over the root its proof leads to, and the addressee. */
async function verifyStamp(exchange, event, me) {
  const jws = header(event.xgwstamp ?? "");
  const h = jws.fields;
  if (
    h.typ !== "xgw-stamp+jws" ||
    JSON.stringify(h.crit) !== '["xgw"]' ||
    h.xgw?.tree !== "rfc9162-sha256" ||
    !Number.isInteger(h.xgw?.size) ||
    !Array.isArray(h.x5c)
  ) {
    throw new Refused("bad_signature", "gateway stamp: not an xgw-stamp+jws header");
  }
  const { key, thumbprint } = exchange.key(h.x5c[0], GATEWAY_URI, "gateway stamp");
  if (h.kid !== thumbprint || h["x5t#S256"] !== thumbprint) {
    throw new Refused("unknown_signer", "gateway stamp: kid is not the certificate's x5t#S256");
  }
  const leaf = Buffer.from(canonicalize(without(event, new Set(STAMP_ATTRIBUTES))), "utf8");
  const root = rootOf(sha256(Buffer.concat([Buffer.of(0), leaf])), event.xgwstampproof ?? "", h.xgw.size);
  // The registry of an integrator: jose's own, plus the one critical parameter it understands.
  await verifyJws(jws, root, key, { algorithms: ["Ed25519", "ES256"], crit: { xgw: true }, what: "gateway stamp" });
  if (event.xgwrecipient !== me) {
    throw new Refused("malformed_envelope", `addressed to ${event.xgwrecipient}, not ${me}`);
  }
}

/** The origin signature under the source agency's certificate, then every disclosure. */
async function verifyOrigin(exchange, event) {
  if (typeof event.source !== "string" || !event.source.startsWith(AGENCY_PREFIX)) {
    throw new Refused("malformed_envelope", "source is not an agency");
  }
  const jws = header(event.xgwsig ?? "");
  const { key, thumbprint } = exchange.key(event.xgwsignercert, event.source, "origin signature");
  if (jws.fields.kid !== thumbprint || jws.fields["x5t#S256"] !== thumbprint) {
    throw new Refused("unknown_signer", "origin signature: kid is not the certificate's x5t#S256");
  }
  const signed = Buffer.from(canonicalize(without(event, UNSIGNED)), "utf8");
  // EdDSA: the deprecated name some publishers still send (docs/envelope.md).
  await verifyJws(jws, signed, key, { algorithms: ["Ed25519", "EdDSA", "ES256"], what: "origin signature" });
  const digests = new Set(event.data?._sd ?? []);
  const fields = {};
  const seen = new Set();
  for (const disclosure of (event.xgwdisclosures ?? "").split("~").filter(Boolean)) {
    const digest = b64url(sha256(Buffer.from(disclosure, "ascii")));
    if (!digests.has(digest)) throw new Refused("disclosure_mismatch", "a disclosure is not signed");
    const [salt, name, value] = JSON.parse(unb64url(disclosure).toString("utf8"));
    if (seen.has(digest) || name in fields) {
      throw new Refused("duplicate_disclosure", `${name} is disclosed twice`);
    }
    if (typeof salt !== "string" || salt.length < 22) {
      throw new Refused("malformed_disclosure", "salt shorter than 128 bits");
    }
    seen.add(digest);
    fields[name] = value;
  }
  return fields;
}

async function verifyCase(exchange, directory, entry) {
  const raw = readFileSync(join(directory, entry.file));
  const event = JSON.parse(raw.toString("utf8"));
  try {
    await verifyStamp(exchange, event, entry.verifier);
    if (entry.kind === "delivery") {
      const fields = await verifyOrigin(exchange, event);
      return { reason: null, detail: `fields ${Object.keys(fields).sort().join(",")}` };
    }
    return { reason: null, detail: `status ${event.data?.status}` };
  } catch (error) {
    if (error instanceof Refused) return { reason: error.reason, detail: error.message };
    throw error;
  }
}

async function main(directory) {
  const manifest = JSON.parse(readFileSync(join(directory, "manifest.json"), "utf8"));
  const exchange = new Exchange(
    readFileSync(resolve(directory, manifest.root_certificate)),
    readFileSync(resolve(directory, manifest.crl), "utf8"),
    new Date(manifest.verify_at),
  );
  await exchange.check();
  let failures = 0;
  for (const entry of manifest.cases) {
    const { reason, detail } = await verifyCase(exchange, directory, entry);
    const ok = reason === entry.reason;
    failures += ok ? 0 : 1;
    const got = reason === null ? "valid" : `invalid (${reason})`;
    const expected = entry.reason === null ? "valid" : `invalid (${entry.reason})`;
    console.log(`${ok ? "ok  " : "FAIL"} ${entry.name}: ${got}${ok ? "" : `, expected ${expected}`}; ${detail}`);
  }
  console.log(`${manifest.cases.length - failures} of ${manifest.cases.length} cases as expected`);
  return failures === 0 ? 0 : 1;
}

if (process.argv.length !== 3) {
  console.error("usage: node verify.mjs <vectors directory>");
  process.exit(2);
}
main(process.argv[2]).then(
  (code) => process.exit(code),
  (error) => {
    console.error(`error: ${error.message}`);
    process.exit(2);
  },
);
