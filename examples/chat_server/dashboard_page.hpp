// wsguard reference chat server — the live dashboard served at GET /.
// SPDX-License-Identifier: MIT
//
// Self-contained: no script or font from the network. It polls /history (the
// server's sample ring) and /stats once a second and draws each series on a
// canvas with a few lines of plotting code.
#pragma once

namespace chat {

inline const char* dashboard_page() {
    return R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wsguard — chat server</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#1d2330;background:#f6f7f9}
h1{font-size:20px;margin:0 0 .2em}
.sub{color:#555;margin:0 0 1em}
#health{padding:.6em .9em;border-radius:6px;margin-bottom:1em;background:#e6f4ea}
#health.warning{background:#fff4d6}#health.critical{background:#fde2e1}
#health b{text-transform:uppercase}
#findings{margin:.3em 0 0;padding-left:1.2em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px 10px}
.card h2{font-size:13px;margin:0;display:flex;justify-content:space-between}
.card h2 span{font-variant-numeric:tabular-nums;color:#333}
canvas{width:100%;height:120px;display:block}
.growth{font-size:12px;color:#555;min-height:1.2em}
#bridge{margin-bottom:1em}#bridge table{border-collapse:collapse;font-size:13px}
#bridge td{padding:1px 12px 1px 0;font-variant-numeric:tabular-nums}
#bridge.down{background:#fff4d6}
</style></head>
<body>
<h1>wsguard chat server</h1>
<p class="sub">WebSocket on this address · <a href="/stats">/stats</a> ·
<a href="/metrics">/metrics</a> · <span id="status">connecting…</span></p>
<div id="health"><b id="level">…</b> <span id="summary"></span><ul id="findings"></ul></div>
<div class="card" id="bridge"><h2>Bridge (rooms across servers)<span id="b-state">–</span></h2>
<table><tr><td>down for</td><td id="b-down">–</td><td>last error</td><td id="b-error">–</td></tr>
<tr><td>failed, by reason</td><td colspan="3" id="b-failures">–</td></tr>
<tr><td>received, dropped</td><td colspan="3" id="b-dropped">–</td></tr></table></div>
<div class="grid" id="plots"></div>
<script>
"use strict";
const SERIES=[
  ["resident_bytes","Resident memory","bytes"],["heap_bytes","Heap in use","bytes"],
  ["connections","Connections","count"],["listeners","Listeners","count"],
  ["queued_bytes","Queued bytes","bytes"],["rooms","Rooms","count"],
  ["memberships","Memberships","count"]];
const plots={};
for(const [key,title] of SERIES){
  const card=document.createElement("div");card.className="card";card.dataset.series=key;
  card.innerHTML=`<h2>${title}<span id="v-${key}">–</span></h2><canvas></canvas><div class="growth" id="g-${key}"></div>`;
  document.getElementById("plots").appendChild(card);
  plots[key]={canvas:card.querySelector("canvas"),points:0};
}
function fmt(v,unit){
  if(v==null||isNaN(v))return "–";
  if(unit==="bytes"){const u=["B","KiB","MiB","GiB"];let i=0;while(Math.abs(v)>=1024&&i<3){v/=1024;i++;}
    return v.toFixed(i?1:0)+" "+u[i];}
  return Math.round(v).toLocaleString();
}
// One line chart: x is seconds before now, y from 0 (or the minimum) to the maximum.
function draw(plot,xs,ys,unit){
  const c=plot.canvas,dpr=window.devicePixelRatio||1,w=c.clientWidth,h=c.clientHeight;
  c.width=w*dpr;c.height=h*dpr;const g=c.getContext("2d");g.scale(dpr,dpr);g.clearRect(0,0,w,h);
  const pts=xs.map((x,i)=>[x,ys[i]]).filter(p=>p[1]!=null);plot.points=pts.length;
  c.dataset.points=pts.length;
  if(!pts.length)return;
  let lo=Math.min(...pts.map(p=>p[1])),hi=Math.max(...pts.map(p=>p[1]));
  // Flat series sit on a zero-based axis; moving ones zoom in on their range.
  if(hi===lo){lo=Math.min(0,lo);hi=Math.max(hi,1);}else if(lo>0&&lo>hi*0.5)lo=lo*0.98;else lo=Math.min(0,lo);
  const x0=Math.min(...pts.map(p=>p[0])),x1=Math.max(...pts.map(p=>p[0]),x0+1);
  const L=56,R=6,T=6,B=16,X=x=>L+(x-x0)/(x1-x0)*(w-L-R),Y=y=>T+(1-(y-lo)/(hi-lo))*(h-T-B);
  g.strokeStyle="#e3e6eb";g.fillStyle="#777";g.font="10px system-ui";g.lineWidth=1;
  for(const f of [0,0.5,1]){const y=lo+f*(hi-lo);g.beginPath();g.moveTo(L,Y(y));g.lineTo(w-R,Y(y));g.stroke();
    g.fillText(fmt(y,unit),2,Y(y)+3);}
  g.fillText(Math.round(x1-x0)+" s",w-R-30,h-3);
  g.strokeStyle="#2f6fde";g.lineWidth=1.6;g.beginPath();
  pts.forEach((p,i)=>i?g.lineTo(X(p[0]),Y(p[1])):g.moveTo(X(p[0]),Y(p[1])));g.stroke();
}
async function refresh(){
  try{
    const [hist,stats]=await Promise.all([
      fetch("/history",{cache:"no-store"}).then(r=>r.json()),
      fetch("/stats",{cache:"no-store"}).then(r=>r.json())]);
    const xs=hist.samples.map(s=>s.t);
    for(const [key,,unit] of SERIES){
      draw(plots[key],xs,hist.samples.map(s=>s[key]),unit);
      const last=hist.samples.length?hist.samples[hist.samples.length-1][key]:null;
      document.getElementById("v-"+key).textContent=fmt(last,unit);
      const gr=(stats.growth&&stats.growth[key])||null;
      document.getElementById("g-"+key).textContent=gr&&gr.growth_per_hour!=null
        ?`growth ${fmt(gr.growth_per_hour,unit)}/h · fit r² ${gr.r_squared.toFixed(2)} · ${gr.level}`:"growth: collecting samples";
    }
    const b=stats.bridge||{};
    const text=(id,v)=>{document.getElementById(id).textContent=v;};
    document.getElementById("bridge").className="card"+(b.ready===false?" down":"");
    text("b-state",(b.state||"–")+(b.ready?" · ready":" · not ready"));
    text("b-down",b.state==="local"?"no broker":((b.down_for_ms||0)/1000).toFixed(1)+" s");
    text("b-error",b.last_error||"none");
    const f=b.failures||{};
    text("b-failures",Object.keys(f).map(k=>k+" "+f[k]).join(" · ")||"–");
    text("b-dropped",["malformed","invalid_utf8","not_followed"].map(k=>k+" "+(b[k]||0)).join(" · ")
      +" · protocol errors "+(b.protocol_errors||0)+" · reply timeouts "+(b.reply_timeouts||0));
    const h=stats.health||{level:"ok",findings:[]};
    const box=document.getElementById("health");box.className=h.level;
    document.getElementById("level").textContent=h.level;
    document.getElementById("summary").textContent=h.findings.length?"":
      "nothing grows: no finding";
    document.getElementById("findings").innerHTML=h.findings.map(f=>
      `<li><b>${f.series}</b> (${f.level}): ${f.message.replace(/</g,"&lt;")}</li>`).join("")
      +(h.checks||[]).filter(c=>c.level!=="ok").map(c=>`<li>${c.name} (${c.level}): ${c.message.replace(/</g,"&lt;")}</li>`).join("");
    document.getElementById("status").textContent="live, "+stats.connections+" connections, updated "+new Date().toLocaleTimeString();
  }catch(e){document.getElementById("status").textContent="server unreachable ("+e.message+")";}
}
refresh();setInterval(refresh,1000);
</script>
</body></html>
)html";
}

}  // namespace chat
