//! A reflector that misbehaves on purpose, so the host's tests can prove that limits and
//! output checks hold. Its behaviour is chosen per call by the `mode` key of the plugin
//! configuration, or per object by the annotation `test.liqo.io/mode` (which wins):
//!
//! | mode              | behaviour                                                   |
//! |-------------------|-------------------------------------------------------------|
//! | `echo` (default)  | returns the object unchanged                                |
//! | `loop`            | spins forever (the CPU limit must stop it)                  |
//! | `trap`            | executes `unreachable`                                      |
//! | `oom`             | allocates until the memory cap stops it                     |
//! | `garbage`         | returns text that is not JSON                               |
//! | `wrong-kind`      | returns the object with another kind                        |
//! | `no-name`         | returns the object without `metadata.name`                  |
//! | `other-namespace` | returns the object aimed at namespace `kube-system`         |
//! | `server-fields`   | returns the object with uid, resourceVersion, foreign labels |
//! | `error`           | returns an error string                                     |
//! | `skip`            | skips with a reason                                         |
//! | `read`            | reads a Service it did not declare and reports the result   |
//! | `sandbox`         | tries the environment, the filesystem and the network; skips |
//! |                   | with a report of what it could reach                         |
//!
//! It is never embedded in the host binary; only the tests load it.

#[cfg(target_arch = "wasm32")]
mod component {
    use liqo_plugin_sdk::{
        DecisionJson as Decision, HostApi, KindRef, LogLevel, Manifest, ReflectContext, Reflector,
    };
    use serde_json::{Value, json};

    struct Misbehaving;

    fn config_kind() -> KindRef {
        KindRef {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespaced: true,
        }
    }

    fn mode(ctx: &ReflectContext, object: &Value) -> String {
        if let Some(m) = object
            .pointer("/metadata/annotations/test.liqo.io~1mode")
            .and_then(Value::as_str)
        {
            return m.to_string();
        }
        serde_json::from_str::<Value>(&ctx.config)
            .ok()
            .and_then(|c| c.get("mode").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "echo".to_string())
    }

    impl Reflector for Misbehaving {
        fn manifest() -> Manifest {
            Manifest {
                name: "misbehaving".into(),
                version: "0.0.1".into(),
                description: "test-only plugin that misbehaves on request".into(),
                reflects: vec![config_kind()],
                triggers: vec![],
                reads: vec![],
                reflect_status: false,
            }
        }

        fn reflect(
            host: &dyn HostApi,
            ctx: &ReflectContext,
            object: &str,
        ) -> Result<Decision, String> {
            let mut obj: Value = serde_json::from_str(object).map_err(|e| e.to_string())?;
            match mode(ctx, &obj).as_str() {
                "loop" => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                "trap" => core::arch::wasm32::unreachable(),
                "oom" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "garbage" => Ok(Decision::Apply("this is not json {".into())),
                "wrong-kind" => {
                    obj["kind"] = json!("Secret");
                    Ok(Decision::Apply(obj.to_string()))
                }
                "no-name" => {
                    obj["metadata"].as_object_mut().map(|m| m.remove("name"));
                    Ok(Decision::Apply(obj.to_string()))
                }
                "other-namespace" => {
                    obj["metadata"]["namespace"] = json!("kube-system");
                    Ok(Decision::Apply(obj.to_string()))
                }
                "server-fields" => {
                    obj["metadata"]["uid"] = json!("0000-1111");
                    obj["metadata"]["resourceVersion"] = json!("42");
                    obj["metadata"]["labels"]["offloading.liqo.io/origin"] = json!("forged");
                    obj["status"] = json!({"forged": true});
                    Ok(Decision::Apply(obj.to_string()))
                }
                "error" => Err("the plugin refuses this object".into()),
                "skip" => Ok(Decision::Skip("skipped on request".into())),
                "read" => {
                    let kind = KindRef {
                        group: String::new(),
                        version: "v1".into(),
                        kind: "Service".into(),
                        plural: "services".into(),
                        namespaced: true,
                    };
                    match host.get_object(&kind, &ctx.local_namespace, "any") {
                        Ok(_) => Err("reading an undeclared kind was allowed".into()),
                        Err(e) => Ok(Decision::Skip(format!("read refused: {e}"))),
                    }
                }
                "sandbox" => {
                    let env = std::env::vars().count();
                    let args = std::env::args().count();
                    let fs = std::fs::read_dir("/").is_ok() || std::fs::read("/etc/passwd").is_ok();
                    let net = std::net::TcpStream::connect("127.0.0.1:22").is_ok();
                    Ok(Decision::Skip(format!(
                        "env={env} args={args} fs={fs} net={net}"
                    )))
                }
                _ => {
                    host.log(LogLevel::Debug, "echo", &[]);
                    Ok(Decision::Apply(obj.to_string()))
                }
            }
        }
    }

    liqo_plugin_sdk::export_reflector!(Misbehaving);
}
