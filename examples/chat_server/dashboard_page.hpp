// wsguard reference chat server — the page served at GET /.
// SPDX-License-Identifier: MIT
#pragma once

namespace chat {

/// A self-contained page (no network access needed) that polls /stats.
inline const char* dashboard_page() {
    return R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wsguard chat server</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td{padding:2px 12px;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}
</style></head>
<body>
<h1>wsguard chat server</h1>
<p>Connect a WebSocket client to this address. Live counts from <a href="/stats">/stats</a>
(Prometheus: <a href="/metrics">/metrics</a>).</p>
<table id="counts"></table>
<script>
const keys=["connections","rooms","memberships","listeners","queued_bytes",
            "dropped_messages","rejected_connections"];
async function refresh(){
  try{
    const s=await (await fetch("/stats",{cache:"no-store"})).json();
    const rows=keys.map(k=>`<tr><td>${k}</td><td class="n">${s[k]}</td></tr>`);
    rows.push(`<tr><td>resident memory</td><td class="n">${(s.memory.resident_bytes/1048576).toFixed(1)} MiB</td></tr>`);
    document.getElementById("counts").innerHTML=rows.join("");
  }catch(e){document.getElementById("counts").textContent="server unreachable";}
}
refresh();setInterval(refresh,1000);
</script>
</body></html>
)html";
}

}  // namespace chat
