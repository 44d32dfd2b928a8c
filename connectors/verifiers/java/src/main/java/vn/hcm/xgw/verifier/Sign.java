package vn.hcm.xgw.verifier;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.JWSObject;
import com.nimbusds.jose.JWSSigner;
import com.nimbusds.jose.Payload;
import com.nimbusds.jose.crypto.ECDSASigner;
import com.nimbusds.jose.crypto.Ed25519Signer;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.OctetKeyPair;
import com.nimbusds.jose.util.Base64URL;
import com.nimbusds.jose.util.JSONArrayUtils;
import com.nimbusds.jose.util.JSONObjectUtils;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.interfaces.ECPrivateKey;
import java.security.interfaces.EdECPrivateKey;
import java.security.spec.PKCS8EncodedKeySpec;
import java.text.Normalizer;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.erdtman.jcs.JsonCanonicalizer;

/**
 * Builds the signed form of an event for the HCMC exchange gateway with stock libraries only:
 * nimbus-jose-jwt (the detached JWS), java-json-canonicalization (RFC 8785) and the JDK.
 * docs/envelope.md is the specification; docs/integration.md walks through the steps.
 *
 * <pre>Sign --agency police --key police.key.pem --cert police.crt.pem
 *      --type vn.hcm.police.resident_registered.v1 --data data.json
 *      [--id uuid] [--time RFC3339] [--deadline RFC3339] [--correlation-id request-id]</pre>
 *
 * <p>Prints one line: the record key (the event's subject), a tab, and the record value. Publish
 * the value with that key to xgw.ingress.&lt;agency&gt; (Kafka's default murmur2 partitioner),
 * header content-type: application/cloudevents+json; charset=UTF-8.
 */
public final class Sign {
  // The data field that names the person an event is about (x-xgw-subject-field in every schema).
  private static final String SUBJECT_FIELD = "personal_id";
  private static final SecureRandom RANDOM = new SecureRandom();

  private Sign() {}

  private static String b64url(byte[] bytes) {
    return Base64URL.encode(bytes).toString();
  }

  private static byte[] sha256(byte[] bytes) throws GeneralSecurityException {
    return MessageDigest.getInstance("SHA-256").digest(bytes);
  }

  /** Unicode NFC everywhere: "Nguyễn" typed with combining marks is other bytes. */
  private static Object nfc(Object value) {
    if (value instanceof String text) {
      return Normalizer.normalize(text, Normalizer.Form.NFC);
    }
    if (value instanceof List<?> list) {
      List<Object> out = new ArrayList<>();
      list.forEach(item -> out.add(nfc(item)));
      return out;
    }
    if (value instanceof Map<?, ?> map) {
      Map<String, Object> out = new LinkedHashMap<>();
      map.forEach((k, v) -> out.put((String) nfc(k), nfc(v)));
      return out;
    }
    return value;
  }

  private static byte[] canonical(Map<String, Object> event) throws IOException {
    return new JsonCanonicalizer(JSONObjectUtils.toJSONString(event)).getEncodedUTF8();
  }

  private static byte[] pem(String text) {
    String body = text.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
    return Base64.getDecoder().decode(body);
  }

  /** A JWS signer for a PKCS#8 Ed25519 or P-256 key, with the algorithm it signs with. */
  private static JWSSigner signer(byte[] pkcs8, X509Certificate certificate)
      throws GeneralSecurityException, JOSEException {
    PrivateKey key;
    try {
      key = KeyFactory.getInstance("Ed25519").generatePrivate(new PKCS8EncodedKeySpec(pkcs8));
    } catch (GeneralSecurityException notEd25519) {
      key = KeyFactory.getInstance("EC").generatePrivate(new PKCS8EncodedKeySpec(pkcs8));
    }
    if (key instanceof ECPrivateKey ec) {
      return new ECDSASigner(ec);
    }
    byte[] d = ((EdECPrivateKey) key).getBytes().orElseThrow();
    // An Ed25519 SubjectPublicKeyInfo ends with the 32 raw key bytes (RFC 8410).
    byte[] spki = certificate.getPublicKey().getEncoded();
    byte[] x = Arrays.copyOfRange(spki, spki.length - 32, spki.length);
    return new Ed25519Signer(
        new OctetKeyPair.Builder(Curve.Ed25519, Base64URL.encode(x))
            .d(Base64URL.encode(d))
            .build());
  }

  @SuppressWarnings("unchecked")
  public static void main(String[] args) throws Exception {
    Map<String, String> options = new LinkedHashMap<>();
    for (String arg : args) {
      int equals = arg.indexOf('=');
      if (!arg.startsWith("--") || equals < 0) {
        System.err.println("error: arguments are --name=value; got " + arg);
        System.exit(2);
      }
      options.put(arg.substring(2, equals), arg.substring(equals + 1));
    }
    for (String name : List.of("agency", "key", "cert", "type", "data")) {
      if (!options.containsKey(name)) {
        System.err.println("error: --" + name + " is required");
        System.exit(2);
      }
    }
    X509Certificate certificate =
        (X509Certificate)
            CertificateFactory.getInstance("X.509")
                .generateCertificate(
                    new ByteArrayInputStream(Files.readAllBytes(Path.of(options.get("cert")))));
    JWSSigner signer = signer(pem(Files.readString(Path.of(options.get("key")))), certificate);
    Map<String, Object> data =
        (Map<String, Object>)
            nfc(JSONObjectUtils.parse(Files.readString(Path.of(options.get("data")))));
    if (!(data.get(SUBJECT_FIELD) instanceof String personalId)) {
      System.err.println("error: the data has no " + SUBJECT_FIELD + " string");
      System.exit(2);
      return;
    }

    // RFC 9901 disclosures, one per top-level field, with 128-bit salts; the sorted digests.
    List<String> disclosures = new ArrayList<>();
    List<String> digests = new ArrayList<>();
    for (Map.Entry<String, Object> field : data.entrySet()) {
      byte[] salt = new byte[16];
      RANDOM.nextBytes(salt);
      String json = JSONArrayUtils.toJSONString(List.of(b64url(salt), field.getKey(), field.getValue()));
      String disclosure = b64url(json.getBytes(StandardCharsets.UTF_8));
      disclosures.add(disclosure);
      digests.add(b64url(sha256(disclosure.getBytes(StandardCharsets.US_ASCII))));
    }
    digests.sort(null); // code-point order: plain byte order for base64url text

    Map<String, Object> event = new LinkedHashMap<>();
    event.put("specversion", "1.0");
    event.put("id", options.getOrDefault("id", UUID.randomUUID().toString()));
    event.put("source", "urn:hcm:agency:" + options.get("agency"));
    event.put("type", options.get("type"));
    byte[] person = ("vn-person:" + personalId).getBytes(StandardCharsets.UTF_8);
    event.put("subject", "sha256:" + b64url(sha256(person)));
    event.put(
        "time", options.getOrDefault("time", Instant.now().truncatedTo(ChronoUnit.MICROS).toString()));
    event.put("datacontenttype", "application/json");
    event.put("data", Map.of("_sd", digests, "_sd_alg", "sha-256"));
    if (options.containsKey("deadline")) {
      event.put("xgwdeadline", options.get("deadline"));
    }
    if (options.containsKey("correlation-id")) {
      event.put("correlationid", options.get("correlation-id"));
    }

    // The signed bytes: every attribute so far (not xgwsig, not xgwdisclosures), canonical.
    String thumbprint = b64url(sha256(certificate.getEncoded()));
    JWSAlgorithm alg = signer instanceof ECDSASigner ? JWSAlgorithm.ES256 : JWSAlgorithm.Ed25519;
    JWSObject jws =
        new JWSObject(
            new JWSHeader.Builder(alg)
                .keyID(thumbprint)
                .x509CertSHA256Thumbprint(new Base64URL(thumbprint))
                .build(),
            new Payload(canonical(event)));
    jws.sign(signer);
    event.put("xgwsig", jws.serialize(true)); // detached (RFC 7515 appendix F)
    event.put("xgwdisclosures", String.join("~", disclosures));
    System.out.println(event.get("subject") + "\t" + JSONObjectUtils.toJSONString(event));
  }
}
