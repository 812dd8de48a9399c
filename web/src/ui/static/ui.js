// Airlock governance UI: signs approval and revocation records in the browser.
//
// The record is the one `airlock approve` / `airlock revoke` builds: the server's report gives the
// pinned files (data-record), the reviewer adds who, why and when. The signature covers
// FORMAT "\n" canonical-JSON(record) (keys sorted, no whitespace), exactly as signing/src/approval.rs
// defines it; the server re-derives the same bytes and verifies them against [governance] keys. The
// private key file is read here and never leaves the browser.
"use strict";
(function () {
  const signer = document.getElementById("signer");
  if (!signer) return;

  function fail(msg) {
    const e = document.getElementById("sign-error");
    e.textContent = msg;
    e.hidden = false;
  }

  // WebCrypto exists only in secure contexts: https, or http on localhost / 127.0.0.1.
  if (!window.isSecureContext || !window.crypto || !window.crypto.subtle) {
    document.getElementById("insecure-host").textContent = location.host;
    document.getElementById("insecure-context").hidden = false;
    signer.hidden = true;
    return;
  }

  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
  const sha256 = (bytes) => crypto.subtle.digest("SHA-256", bytes);

  // serde_json and JSON.stringify escape strings identically (", \, control characters); keys
  // here are ASCII, so code-unit order is byte order.
  function canonical(v) {
    if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
    if (v !== null && typeof v === "object") {
      return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
    }
    return JSON.stringify(v);
  }

  // Seconds precision in UTC, the form the server's Timestamp prints (and so signs).
  const stamp = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

  // `airlock keygen` writes PKCS#8 PEM. Its DER may carry the public key too (PKCS#8 v2), which
  // not every WebCrypto accepts, so the 32-byte seed is taken out and re-wrapped as plain v1.
  async function importKey(text) {
    const m = /-----BEGIN PRIVATE KEY-----([\s\S]*?)-----END PRIVATE KEY-----/.exec(text);
    if (!m) throw new Error("not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----); pick governance.key");
    let der;
    try {
      der = Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
    } catch (e) {
      throw new Error("the key file's base64 is damaged");
    }
    const oid = [0x06, 0x03, 0x2b, 0x65, 0x70]; // 1.3.101.112, Ed25519
    const find = (pat, from) => {
      for (let i = from; i + pat.length <= der.length; i++) {
        if (pat.every((b, j) => der[i + j] === b)) return i;
      }
      return -1;
    };
    const at = find(oid, 0);
    const seedAt = at < 0 ? -1 : find([0x04, 0x22, 0x04, 0x20], at + oid.length);
    if (seedAt < 0 || seedAt + 36 > der.length) throw new Error("not an Ed25519 private key");
    const v1 = new Uint8Array(48);
    v1.set([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);
    v1.set(der.subarray(seedAt + 4, seedAt + 36), 16);
    let key;
    try {
      key = await crypto.subtle.importKey("pkcs8", v1, { name: "Ed25519" }, true, ["sign"]);
    } catch (e) {
      throw new Error("this browser cannot use Ed25519 keys with WebCrypto (" + e.message + "); use the CLI below");
    }
    const jwk = await crypto.subtle.exportKey("jwk", key);
    const pub = Uint8Array.from(atob(jwk.x.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    // The key id is the first 16 hex digits of the sha256 of the raw public key (signing/src/keys.rs).
    const keyId = hex(await sha256(pub)).slice(0, 16);
    return { key, keyId };
  }

  async function signAndSend() {
    document.getElementById("sign-error").hidden = true;
    const kind = signer.dataset.kind;
    const record = JSON.parse(signer.dataset.record);
    const by = document.getElementById("by").value.trim();
    const reason = document.getElementById("reason").value;
    if (!by) throw new Error("say who signs");
    if (!reason.trim()) throw new Error("give a reason");
    const file = document.getElementById("keyfile").files[0];
    if (!file) throw new Error("pick your governance key file");
    const { key, keyId } = await importKey(await file.text());
    let format;
    if (kind === "approval") {
      format = "airlock-approval-v1";
      record.approved_by = by;
      record.reason = reason;
      record.approved_at = stamp(new Date());
      const override = document.getElementById("license-override");
      record.license_override = !!(override && override.checked);
      const expires = document.getElementById("expires").value.trim();
      if (expires) {
        const t = new Date(expires);
        if (isNaN(t.getTime())) throw new Error("expires: not a time (use e.g. 2027-01-31T00:00:00Z)");
        record.expires_at = stamp(t);
      }
    } else {
      format = "airlock-revocation-v1";
      record.revoked_by = by;
      record.reason = reason;
      record.revoked_at = stamp(new Date());
    }
    const message = new TextEncoder().encode(format + "\n" + canonical(record));
    const signature = await crypto.subtle.sign({ name: "Ed25519" }, key, message);
    const signed = Object.assign({}, record, { format, signature: hex(signature), signed_by: keyId });
    if (kind === "approval") {
      // The approval id is bound to the signed bytes: appr- and 12 hex digits of their sha256.
      signed.id = "appr-" + hex(await sha256(message)).slice(0, 12);
    }
    document.getElementById("signed-record").value = JSON.stringify(signed);
    document.getElementById("signed-form").submit();
  }

  for (const id of ["sign-approve", "sign-revoke"]) {
    const b = document.getElementById(id);
    if (b) b.addEventListener("click", () => signAndSend().catch((e) => fail(e.message)));
  }
})();
