//! The AI-BOM: a CycloneDX 1.6 ML-BOM of one version — the model (name, version, licence, model
//! card data), every file with its sha256, size and scan result, and the approval and signature
//! that cover it. Deterministic (no timestamp; the serial number is derived from the version), so
//! the BOM in a bundle and the one `airlock bom` prints are the same document.

use serde_json::{json, Value};
use signing::ApprovalRecord;
use verifier::Digest;

use super::Version;

fn prop(name: &str, value: impl ToString) -> Value {
    json!({ "name": name, "value": value.to_string() })
}

/// A version's ML-BOM; `approval` is the record named by the version, if the caller holds it.
pub fn bom_of(version: &Version, approval: Option<&ApprovalRecord>) -> Value {
    let (kind, name, revision, files, approval_id, license, refs) = match version {
        Version::Hf {
            name,
            commit,
            files,
            approval,
            license,
            refs,
            ..
        } => (
            "huggingface",
            name.as_str(),
            commit.hex(),
            files,
            approval,
            license,
            refs,
        ),
        Version::Ollama {
            name,
            manifest,
            layers,
            approval,
            license,
            tags,
            ..
        } => (
            "ollama",
            name.as_str(),
            manifest.to_string(),
            layers,
            approval,
            license,
            tags,
        ),
    };
    // An RFC 4122 name-based layout over the version's sha256, so the same version always gets
    // the same serial number.
    let h = Digest::of(version.label().as_bytes()).hex();
    let serial = format!(
        "urn:uuid:{}-{}-5{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        8 | (u8::from_str_radix(&h[16..17], 16).unwrap_or(0) & 3),
        &h[17..20],
        &h[20..32]
    );
    let model_ref = format!("{kind}:{name}@{revision}");
    let mut model_props = vec![prop("airlock:source", kind)];
    for r in refs {
        model_props.push(prop("airlock:ref", r));
    }
    if let Some(id) = approval_id {
        model_props.push(prop("airlock:approval", id));
    }
    if let Some(a) = approval {
        model_props.push(prop("airlock:approved-by", &a.approved_by));
        model_props.push(prop("airlock:approved-at", a.approved_at));
        model_props.push(prop("airlock:approval-reason", &a.reason));
    }
    for f in files {
        if f.path.ends_with("model.sig") || f.path.ends_with(".asc") {
            model_props.push(prop("airlock:signature-file", &f.path));
        }
    }
    let mut model = json!({
        "type": "machine-learning-model",
        "bom-ref": model_ref,
        "name": name,
        "version": revision,
        "modelCard": {
            "properties": [
                prop("airlock:files", files.len()),
                prop("airlock:bytes", files.iter().map(|f| f.size).sum::<u64>()),
            ]
        },
        "properties": model_props,
    });
    if let Some(l) = license {
        model["licenses"] = json!([{ "license": { "name": l } }]);
    }
    let components: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({
                "type": "file",
                "bom-ref": format!("{model_ref}#{}", f.path),
                "name": f.path,
                "hashes": [{ "alg": "SHA-256", "content": f.sha256.hex() }],
                "properties": [
                    prop("airlock:size", f.size),
                    prop("airlock:scan", &f.scan),
                ],
            })
        })
        .collect();
    let file_refs: Vec<Value> = files
        .iter()
        .map(|f| Value::String(format!("{model_ref}#{}", f.path)))
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "tools": { "components": [{
                "type": "application",
                "name": "airlock",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": model,
        },
        "components": components,
        "dependencies": [{ "ref": model_ref, "dependsOn": file_refs }],
    })
}
