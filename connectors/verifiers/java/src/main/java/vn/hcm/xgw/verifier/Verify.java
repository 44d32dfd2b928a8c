package vn.hcm.xgw.verifier;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.JWSObject;
import com.nimbusds.jose.JWSVerifier;
import com.nimbusds.jose.Payload;
import com.nimbusds.jose.crypto.ECDSAVerifier;
import com.nimbusds.jose.crypto.Ed25519Verifier;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.OctetKeyPair;
import com.nimbusds.jose.util.Base64;
import com.nimbusds.jose.util.Base64URL;
import com.nimbusds.jose.util.JSONArrayUtils;
import com.nimbusds.jose.util.JSONObjectUtils;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.cert.CertPathValidator;
import java.security.cert.CertPathValidatorException;
import java.security.cert.CertStore;
import java.security.cert.CertificateFactory;
import java.security.cert.CollectionCertStoreParameters;
import java.security.cert.PKIXParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509CRL;
import java.security.cert.X509Certificate;
import java.security.interfaces.ECPublicKey;
import java.text.ParseException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Date;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.erdtman.jcs.JsonCanonicalizer;

/**
 * Verifies HCMC exchange gateway deliveries and receipts with stock libraries only: nimbus-jose-jwt
 * (JWS), java-json-canonicalization (RFC 8785) and the JDK's PKIX path validation with the CRL.
 * None of the gateway's own code is used; docs/envelope.md is the specification and
 * docs/verifiers.md explains this file.
 *
 * <pre>java -cp ... vn.hcm.xgw.verifier.Verify &lt;vectors directory&gt;</pre>
 *
 * <p>Prints one line per case of the directory's manifest.json and exits 1 if any case does not
 * end as the manifest expects.
 */
public final class Verify {
  private static final String GATEWAY_URI = "urn:hcm:xgw:gateway";
  private static final String AGENCY_PREFIX = "urn:hcm:agency:";
  private static final Set<String> STAMP_ATTRIBUTES = Set.of("xgwstamp", "xgwstampproof");
  // Not covered by the origin's signature (docs/envelope.md, "The origin signature").
  private static final Set<String> UNSIGNED =
      Set.of(
          "xgwsig", "xgwdisclosures", "xgwrecipient", "xgwpurpose", "xgwlegalbasis",
          "xgwsignercert", "xgwstamp", "xgwstampproof");
  // The stamp's one private header parameter, which its header declares critical.
  private static final Set<String> STAMP_CRIT = Set.of("xgw");
  private static final int SAN_URI = 6;

  /** A refusal with the reason code the gateway's agency client would give. */
  static final class Refused extends Exception {
    final String reason;

    Refused(String reason, String detail) {
      super(reason + ": " + detail);
      this.reason = reason;
    }
  }

  private final X509Certificate root;
  private final X509CRL crl;
  private final Date at;

  Verify(X509Certificate root, X509CRL crl, Date at) {
    this.root = root;
    this.crl = crl;
    this.at = at;
  }

  private static byte[] sha256(byte[]... parts) throws GeneralSecurityException {
    MessageDigest digest = MessageDigest.getInstance("SHA-256");
    for (byte[] part : parts) {
      digest.update(part);
    }
    return digest.digest();
  }

  private static byte[] canonical(Map<String, Object> event, Set<String> leaveOut) {
    Map<String, Object> kept = new LinkedHashMap<>(event);
    kept.keySet().removeAll(leaveOut);
    try {
      return new JsonCanonicalizer(JSONObjectUtils.toJSONString(kept)).getEncodedUTF8();
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The key of a certificate issued by the root to {@code uri}, valid at the time, not revoked. */
  private PublicKey key(X509Certificate leaf, String uri, String why) throws Refused {
    try {
      CertificateFactory factory = CertificateFactory.getInstance("X.509");
      PKIXParameters parameters = new PKIXParameters(Set.of(new TrustAnchor(root, null)));
      parameters.setDate(at);
      parameters.setRevocationEnabled(true);
      parameters.addCertStore(
          CertStore.getInstance("Collection", new CollectionCertStoreParameters(List.of(crl))));
      CertPathValidator.getInstance("PKIX")
          .validate(factory.generateCertPath(List.of(leaf)), parameters);
    } catch (CertPathValidatorException e) {
      String reason =
          switch (e.getReason() instanceof CertPathValidatorException.BasicReason basic
              ? basic
              : CertPathValidatorException.BasicReason.UNSPECIFIED) {
            case EXPIRED -> "certificate_expired";
            case NOT_YET_VALID -> "certificate_not_yet_valid";
            case REVOKED -> "revoked_certificate";
            default -> "untrusted_certificate";
          };
      throw new Refused(reason, why + ": " + e.getMessage());
    } catch (GeneralSecurityException e) {
      throw new Refused("untrusted_certificate", why + ": " + e.getMessage());
    }
    if (leaf.getBasicConstraints() != -1) {
      throw new Refused("untrusted_certificate", why + ": a CA certificate");
    }
    List<String> uris = new ArrayList<>();
    try {
      Collection<List<?>> names = leaf.getSubjectAlternativeNames();
      for (List<?> name : names == null ? List.<List<?>>of() : names) {
        if (Integer.valueOf(SAN_URI).equals(name.get(0))) {
          uris.add((String) name.get(1));
        }
      }
    } catch (GeneralSecurityException e) {
      throw new Refused("untrusted_certificate", why + ": unreadable SAN");
    }
    if (!uris.equals(List.of(uri))) {
      throw new Refused("signer_agency_mismatch", why + ": the certificate does not name " + uri);
    }
    return leaf.getPublicKey();
  }

  private static X509Certificate certificate(String base64) throws Refused {
    try {
      return (X509Certificate)
          CertificateFactory.getInstance("X.509")
              .generateCertificate(new ByteArrayInputStream(new Base64(base64).decode()));
    } catch (GeneralSecurityException e) {
      throw new Refused("malformed_envelope", "certificate cannot be read");
    }
  }

  private static JWSVerifier verifier(PublicKey key, Set<String> crit) throws JOSEException {
    if (key instanceof ECPublicKey ec) {
      return new ECDSAVerifier(ec, crit);
    }
    // An Ed25519 SubjectPublicKeyInfo ends with the 32 raw key bytes (RFC 8410).
    byte[] spki = key.getEncoded();
    byte[] raw = Arrays.copyOfRange(spki, spki.length - 32, spki.length);
    return new Ed25519Verifier(
        new OctetKeyPair.Builder(Curve.Ed25519, Base64URL.encode(raw)).build(), crit);
  }

  /** Parse a detached compact JWS with {@code payload} put back, and check alg and signature. */
  private static JWSObject verifyJws(
      String token, byte[] payload, PublicKey key, Set<String> crit, Set<JWSAlgorithm> algs,
      String what)
      throws Refused {
    try {
      String[] parts = token.split("\\.", -1);
      if (parts.length != 3 || !parts[1].isEmpty()) {
        throw new Refused("bad_signature", what + ": not a detached compact JWS");
      }
      JWSObject jws = JWSObject.parse(token, new Payload(payload));
      if (!algs.contains(jws.getHeader().getAlgorithm())) {
        throw new Refused("unsupported_algorithm", what + ": alg " + jws.getHeader().getAlgorithm());
      }
      if (!jws.verify(verifier(key, crit))) {
        throw new Refused("bad_signature", what + " does not verify");
      }
      return jws;
    } catch (ParseException | JOSEException e) {
      throw new Refused("bad_signature", what + ": " + e.getMessage());
    }
  }

  private static JWSHeader header(String token, String what) throws Refused {
    try {
      return JWSHeader.parse(Base64URL.from(token.split("\\.", -1)[0]));
    } catch (ParseException e) {
      throw new Refused("bad_signature", what + ": header is not a JWS header");
    }
  }

  private static String thumbprint(X509Certificate certificate) throws Refused {
    try {
      return Base64URL.encode(sha256(certificate.getEncoded())).toString();
    } catch (GeneralSecurityException e) {
      throw new Refused("untrusted_certificate", "certificate cannot be encoded");
    }
  }

  /** RFC 9162 2.1.3.2: the root from a leaf hash and {@code <index>.<size>.<hash>...}. */
  private static byte[] rootOf(byte[] leafHash, String proof, long signedSize)
      throws Refused, GeneralSecurityException {
    String[] parts = proof.split("\\.", -1);
    if (parts.length < 2
        || !parts[0].matches("0|[1-9][0-9]{0,9}")
        || !parts[1].matches("0|[1-9][0-9]{0,9}")) {
      throw new Refused("bad_signature", "xgwstampproof: index and size must be decimals");
    }
    long fn = Long.parseLong(parts[0]);
    long sn = Long.parseLong(parts[1]) - 1;
    if (sn + 1 != signedSize || fn > sn) {
      throw new Refused("bad_signature", "xgwstampproof: not a leaf of the signed tree");
    }
    byte[] r = leafHash;
    byte[] one = {1};
    for (int i = 2; i < parts.length; i++) {
      byte[] p = Base64URL.from(parts[i]).decode();
      if (p.length != 32 || !Base64URL.encode(p).toString().equals(parts[i]) || sn == 0) {
        throw new Refused("bad_signature", "xgwstampproof: bad audit path");
      }
      if ((fn & 1) == 1 || fn == sn) {
        r = sha256(one, p, r);
        while (fn != 0 && (fn & 1) == 0) {
          fn >>= 1;
          sn >>= 1;
        }
      } else {
        r = sha256(one, r, p);
      }
      fn >>= 1;
      sn >>= 1;
    }
    if (sn != 0) {
      throw new Refused("bad_signature", "xgwstampproof: audit path too short");
    }
    return r;
  }

  /** The stamp: the gateway's signature over the root its proof leads to, and the addressee. */
  void verifyStamp(Map<String, Object> event, String me)
      throws Refused, GeneralSecurityException {
    if (!(event.get("xgwstamp") instanceof String token)
        || !(event.get("xgwstampproof") instanceof String proof)) {
      throw new Refused("bad_signature", "gateway stamp is missing");
    }
    JWSHeader header = header(token, "gateway stamp");
    Object tree = header.getCustomParam("xgw");
    if (header.getType() == null
        || !"xgw-stamp+jws".equals(header.getType().toString())
        || !STAMP_CRIT.equals(header.getCriticalParams())
        || !(tree instanceof Map<?, ?> treeParams)
        || !"rfc9162-sha256".equals(treeParams.get("tree"))
        || !(treeParams.get("size") instanceof Number size)
        || header.getX509CertChain() == null
        || header.getX509CertChain().isEmpty()) {
      throw new Refused("bad_signature", "gateway stamp: not an xgw-stamp+jws header");
    }
    X509Certificate gateway = certificate(header.getX509CertChain().get(0).toString());
    PublicKey key = key(gateway, GATEWAY_URI, "gateway stamp");
    String thumbprint = thumbprint(gateway);
    if (!thumbprint.equals(header.getKeyID())
        || header.getX509CertSHA256Thumbprint() == null
        || !thumbprint.equals(header.getX509CertSHA256Thumbprint().toString())) {
      throw new Refused("unknown_signer", "gateway stamp: kid is not the certificate's x5t#S256");
    }
    byte[] leaf = canonical(event, STAMP_ATTRIBUTES);
    byte[] rootHash = rootOf(sha256(new byte[] {0}, leaf), proof, size.longValue());
    verifyJws(token, rootHash, key, STAMP_CRIT, Set.of(JWSAlgorithm.Ed25519, JWSAlgorithm.ES256),
        "gateway stamp");
    if (!me.equals(event.get("xgwrecipient"))) {
      throw new Refused(
          "malformed_envelope", "addressed to " + event.get("xgwrecipient") + ", not " + me);
    }
  }

  /** The origin signature under the source agency's certificate, then every disclosure. */
  Set<String> verifyOrigin(Map<String, Object> event)
      throws Refused, GeneralSecurityException, ParseException {
    if (!(event.get("source") instanceof String source) || !source.startsWith(AGENCY_PREFIX)) {
      throw new Refused("malformed_envelope", "source is not an agency");
    }
    if (!(event.get("xgwsig") instanceof String token)
        || !(event.get("xgwsignercert") instanceof String carried)) {
      throw new Refused("malformed_envelope", "no origin signature or signer certificate");
    }
    X509Certificate signer = certificate(carried);
    PublicKey key = key(signer, source, "origin signature");
    JWSHeader header = header(token, "origin signature");
    String thumbprint = thumbprint(signer);
    if (!thumbprint.equals(header.getKeyID())
        || header.getX509CertSHA256Thumbprint() == null
        || !thumbprint.equals(header.getX509CertSHA256Thumbprint().toString())) {
      throw new Refused("unknown_signer", "origin signature: kid is not the certificate's x5t#S256");
    }
    // EdDSA: the deprecated name some publishers still send (docs/envelope.md).
    verifyJws(token, canonical(event, UNSIGNED), key, Set.of(),
        Set.of(JWSAlgorithm.Ed25519, JWSAlgorithm.EdDSA, JWSAlgorithm.ES256), "origin signature");
    Map<String, Object> data = JSONObjectUtils.getJSONObject(event, "data");
    Set<String> digests = new HashSet<>();
    for (Object digest : (List<?>) data.get("_sd")) {
      digests.add((String) digest);
    }
    Set<String> fields = new TreeSet<>();
    Set<String> seen = new HashSet<>();
    String joined = event.get("xgwdisclosures") instanceof String text ? text : "";
    for (String disclosure : joined.isEmpty() ? new String[0] : joined.split("~", -1)) {
      String digest =
          Base64URL.encode(sha256(disclosure.getBytes(StandardCharsets.US_ASCII))).toString();
      if (!digests.contains(digest)) {
        throw new Refused("disclosure_mismatch", "a disclosure is not signed");
      }
      List<Object> array = JSONArrayUtils.parse(Base64URL.from(disclosure).decodeToString());
      String name = (String) array.get(1);
      if (!seen.add(digest) || !fields.add(name)) {
        throw new Refused("duplicate_disclosure", name + " is disclosed twice");
      }
      if (!(array.get(0) instanceof String salt) || salt.length() < 22) {
        throw new Refused("malformed_disclosure", "salt shorter than 128 bits");
      }
    }
    return fields;
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      System.err.println("usage: Verify <vectors directory>");
      System.exit(2);
    }
    Path directory = Path.of(args[0]);
    Map<String, Object> manifest =
        JSONObjectUtils.parse(Files.readString(directory.resolve("manifest.json")));
    CertificateFactory factory = CertificateFactory.getInstance("X.509");
    X509Certificate root;
    X509CRL crl;
    try (InputStream in = Files.newInputStream(directory.resolve((String) manifest.get("root_certificate")))) {
      root = (X509Certificate) factory.generateCertificate(in);
    }
    try (InputStream in = Files.newInputStream(directory.resolve((String) manifest.get("crl")))) {
      crl = (X509CRL) factory.generateCRL(in);
    }
    crl.verify(root.getPublicKey());
    Verify verify =
        new Verify(root, crl, Date.from(Instant.parse((String) manifest.get("verify_at"))));
    List<?> cases = (List<?>) manifest.get("cases");
    int failures = 0;
    for (Object item : cases) {
      @SuppressWarnings("unchecked")
      Map<String, Object> entry = (Map<String, Object>) item;
      Map<String, Object> event =
          JSONObjectUtils.parse(
              Files.readString(directory.resolve((String) entry.get("file")), StandardCharsets.UTF_8));
      String reason = null;
      String detail;
      try {
        verify.verifyStamp(event, (String) entry.get("verifier"));
        if ("delivery".equals(entry.get("kind"))) {
          detail = "fields " + String.join(",", verify.verifyOrigin(event));
        } else {
          detail = "status " + JSONObjectUtils.getJSONObject(event, "data").get("status");
        }
      } catch (Refused refused) {
        reason = refused.reason;
        detail = refused.getMessage();
      }
      Object expected = entry.get("reason");
      boolean ok = expected == null ? reason == null : expected.equals(reason);
      failures += ok ? 0 : 1;
      String got = reason == null ? "valid" : "invalid (" + reason + ")";
      String wanted = expected == null ? "valid" : "invalid (" + expected + ")";
      System.out.println(
          (ok ? "ok   " : "FAIL ") + entry.get("name") + ": " + got
              + (ok ? "" : ", expected " + wanted) + "; " + detail);
    }
    System.out.println((cases.size() - failures) + " of " + cases.size() + " cases as expected");
    System.exit(failures == 0 ? 0 : 1);
  }
}
