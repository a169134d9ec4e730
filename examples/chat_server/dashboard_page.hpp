// wsguard reference chat server — the live dashboard served at GET /.
// SPDX-License-Identifier: MIT
//
// Self-contained: no script or font from the network. It polls /history (the
// server's sample ring) and /stats once a second and draws each series on a
// canvas with a few lines of plotting code; the traffic panels (messages,
// drops, refusals and closes per second) are rates of /stats' counters between
// successive polls, several lines per chart.
//
// No charting library (uPlot was suggested): the project commits only code
// written here and the page must load nothing from the network, so the ~80
// lines of canvas code stay, extended for several lines per chart.
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
#bridge.down{background:#fff4d6}#bridge.none h2 span{color:#777}
#checks{border-collapse:collapse;font-size:13px;margin-top:.4em}
#checks td{padding:1px 10px 1px 0;vertical-align:top}
#checks tr.warning td:first-child,#checks tr.critical td:first-child{font-weight:bold}
#checks tr.warning{background:#fff4d6}#checks tr.critical{background:#fde2e1}
h3{font-size:14px;margin:1em 0 .4em}
.legend{font-size:12px;color:#333;min-height:1.2em;font-variant-numeric:tabular-nums}
.legend i{display:inline-block;width:10px;height:3px;margin:0 4px 3px 8px;vertical-align:middle}
</style></head>
<body>
<h1>wsguard chat server</h1>
<p class="sub">WebSocket on this address · <a href="/stats">/stats</a> ·
<a href="/metrics">/metrics</a> · <span id="status">connecting…</span></p>
<div id="health"><b id="level">…</b> <span id="summary"></span><ul id="findings"></ul>
<table id="checks"></table></div>
<div class="card" id="bridge"><h2>Bridge (rooms across servers)<span id="b-state">–</span></h2>
<table><tr><td>down for</td><td id="b-down">–</td><td>last error</td><td id="b-error">–</td></tr>
<tr><td>failed, by reason</td><td colspan="3" id="b-failures">–</td></tr>
<tr><td>received, dropped</td><td colspan="3" id="b-dropped">–</td></tr></table></div>
<h3>Traffic, per second</h3>
<div class="grid" id="rates"></div>
<h3>Series</h3>
<div class="grid" id="plots"></div>
<script>
"use strict";
const SERIES=[
  ["resident_bytes","Resident memory","bytes"],["heap_bytes","Heap in use","bytes"],
  ["connections","Connections","count"],["listeners","Listeners","count"],
  ["queued_bytes","Queued bytes","bytes"],["rooms","Rooms","count"],
  ["memberships","Memberships","count"]];
// Each traffic panel: the counters of one /stats poll, by line name.
const CODES=["1000","1001","1002","1003","1006","1007","1008","1009","1011","1013","other"];
const RATES=[
  ["messages","Messages in / out",s=>({in:s.traffic.messages_in,out:s.traffic.messages_out})],
  ["drops","Dropped messages, by reason",s=>s.dropped||{slow_consumer:s.dropped_messages}],
  ["refusals","Refused connections, by reason",s=>{const r=Object.assign({},s.refused);delete r.total;
    r.max_connections=s.rejected_connections;return r;}],
  ["closes","Closes, by code",s=>s.closes_by_code||{}]];
const COLORS=["#2f6fde","#d9480f","#2b8a3e","#ae3ec9","#e8590c","#1098ad","#f08c00","#5c940d","#c2255c","#495057","#7048e8"];
const plots={},rates={};
function card(parent,attr,key,title,extra){
  const c=document.createElement("div");c.className="card";c.dataset[attr]=key;
  c.innerHTML=`<h2>${title}<span id="v-${key}">–</span></h2><canvas></canvas><div class="${extra}" id="g-${key}"></div>`;
  document.getElementById(parent).appendChild(c);return c;
}
for(const [key,title] of SERIES){plots[key]={canvas:card("plots","series",key,title,"growth").querySelector("canvas")};}
for(const [key,title] of RATES){rates[key]={canvas:card("rates","rates",key,title,"legend").querySelector("canvas")};}
const ring=[];let prev=null;  // rate points {t, key: {line: per second}}, the last counters
function fmt(v,unit){
  if(v==null||isNaN(v))return "–";
  if(unit==="bytes"){const u=["B","KiB","MiB","GiB"];let i=0;while(Math.abs(v)>=1024&&i<3){v/=1024;i++;}
    return v.toFixed(i?1:0)+" "+u[i];}
  if(unit==="rate")return v<10?v.toFixed(1):Math.round(v).toLocaleString();
  return Math.round(v).toLocaleString();
}
// A line chart: x is seconds, y from 0 (or the minimum) to the maximum; one
// line per entry of `lines` ({ys, color}).
function draw(plot,xs,lines,unit){
  const c=plot.canvas,dpr=window.devicePixelRatio||1,w=c.clientWidth,h=c.clientHeight;
  c.width=w*dpr;c.height=h*dpr;const g=c.getContext("2d");g.scale(dpr,dpr);g.clearRect(0,0,w,h);
  const sets=lines.map(l=>xs.map((x,i)=>[x,l.ys[i]]).filter(p=>p[1]!=null));
  const all=[].concat(...sets);c.dataset.points=sets.length?sets[0].length:0;
  if(!all.length)return;
  let lo=Math.min(...all.map(p=>p[1])),hi=Math.max(...all.map(p=>p[1]));
  // Flat series sit on a zero-based axis; moving ones zoom in on their range.
  if(hi===lo){lo=Math.min(0,lo);hi=Math.max(hi,1);}else if(lo>0&&lo>hi*0.5)lo=lo*0.98;else lo=Math.min(0,lo);
  if(unit==="rate")lo=0;  // a rate reads against zero: 54/s is not "none"
  const x0=Math.min(...all.map(p=>p[0])),x1=Math.max(...all.map(p=>p[0]),x0+1);
  const L=56,R=6,T=6,B=16,X=x=>L+(x-x0)/(x1-x0)*(w-L-R),Y=y=>T+(1-(y-lo)/(hi-lo))*(h-T-B);
  g.strokeStyle="#e3e6eb";g.fillStyle="#777";g.font="10px system-ui";g.lineWidth=1;
  for(const f of [0,0.5,1]){const y=lo+f*(hi-lo);g.beginPath();g.moveTo(L,Y(y));g.lineTo(w-R,Y(y));g.stroke();
    g.fillText(fmt(y,unit),2,Y(y)+3);}
  g.fillText(Math.round(x1-x0)+" s",w-R-30,h-3);
  sets.forEach((pts,k)=>{g.strokeStyle=lines[k].color;g.lineWidth=1.6;g.beginPath();
    pts.forEach((p,i)=>i?g.lineTo(X(p[0]),Y(p[1])):g.moveTo(X(p[0]),Y(p[1])));g.stroke();});
}
// Rates between this poll's counters and the last one's; the ring keeps 5 minutes.
function addRates(stats){
  const now=performance.now()/1000,counters={};
  for(const [key,,read] of RATES)counters[key]=read(stats);
  if(prev&&now>prev.t){
    const point={t:now};
    for(const [key] of RATES){point[key]={};
      for(const [line,n] of Object.entries(counters[key]))
        point[key][line]=Math.max(0,(n-((prev.c[key]||{})[line]||0))/(now-prev.t));}
    ring.push(point);if(ring.length>300)ring.shift();
  }
  prev={t:now,c:counters};
  for(const [key] of RATES){
    const names=key==="closes"?CODES:Object.keys(counters[key]);
    // Lines that moved in the window are drawn; a quiet panel draws one zero line.
    const moving=names.filter(n=>ring.some(p=>(p[key][n]||0)>0));
    const shown=moving.length?moving:names.slice(0,1);
    const xs=ring.map(p=>p.t-(ring.length?ring[0].t:0));
    draw(rates[key],xs,shown.map(n=>({ys:ring.map(p=>p[key][n]||0),color:COLORS[names.indexOf(n)%COLORS.length]})),"rate");
    const info={};
    for(const n of names){const ys=ring.map(p=>p[key][n]||0);
      info[n]={now:ys.length?ys[ys.length-1]:0,max:ys.length?Math.max(...ys):0,total:counters[key][n]||0};}
    rates[key].canvas.dataset.lines=JSON.stringify(info);
    const last=ring.length?ring[ring.length-1][key]:{};
    document.getElementById("v-"+key).textContent=fmt(Object.values(last).reduce((a,b)=>a+b,0),"rate")+"/s";
    document.getElementById("g-"+key).innerHTML=names.filter(n=>info[n].total>0||key==="messages")
      .map(n=>`<i style="background:${COLORS[names.indexOf(n)%COLORS.length]}"></i>${n} ${fmt(info[n].now,"rate")}/s (total ${fmt(info[n].total)})`)
      .join(" ")||"none yet";
  }
}
const esc=t=>String(t).replace(/&/g,"&amp;").replace(/</g,"&lt;");
async function refresh(){
  try{
    const [hist,stats]=await Promise.all([
      fetch("/history",{cache:"no-store"}).then(r=>r.json()),
      fetch("/stats",{cache:"no-store"}).then(r=>r.json())]);
    const xs=hist.samples.map(s=>s.t);
    for(const [key,,unit] of SERIES){
      draw(plots[key],xs,[{ys:hist.samples.map(s=>s[key]),color:COLORS[0]}],unit);
      const last=hist.samples.length?hist.samples[hist.samples.length-1][key]:null;
      document.getElementById("v-"+key).textContent=fmt(last,unit);
      const gr=(stats.growth&&stats.growth[key])||null;
      document.getElementById("g-"+key).textContent=gr&&gr.growth_per_hour!=null
        ?`growth ${fmt(gr.growth_per_hour,unit)}/h · fit r² ${gr.r_squared.toFixed(2)} · ${gr.level}`:"growth: collecting samples";
    }
    addRates(stats);
    const b=stats.bridge||{};
    const text=(id,v)=>{document.getElementById(id).textContent=v;};
    // "local" is the in-process default: no broker configured (--redis).
    const none=b.state==="local";
    document.getElementById("bridge").className="card"+(none?" none":b.ready===false?" down":"");
    text("b-state",none?"not configured":(b.state||"–")+(b.ready?" · ready":" · not ready"));
    text("b-down",none?"no broker (--redis): rooms stay on this server":((b.down_for_ms||0)/1000).toFixed(1)+" s");
    text("b-error",none?"–":b.last_error||"none");
    const f=b.failures||{};
    text("b-failures",none?"–":Object.keys(f).map(k=>k+" "+f[k]).join(" · ")||"–");
    text("b-dropped",none?"–":["malformed","invalid_utf8","not_followed"].map(k=>k+" "+(b[k]||0)).join(" · ")
      +" · protocol errors "+(b.protocol_errors||0)+" · reply timeouts "+(b.reply_timeouts||0));
    const h=stats.health||{level:"ok",findings:[],checks:[]};
    const box=document.getElementById("health");box.className=h.level;
    document.getElementById("level").textContent=h.level;
    // What the growth verdict rests on, never a bare "nothing grows".
    const gv=stats.growth_verdict;
    document.getElementById("summary").textContent=gv?gv.message:"";
    document.getElementById("findings").innerHTML=h.findings.map(f=>
      `<li><b>${esc(f.series)}</b> (${f.level}): ${esc(f.message)}</li>`).join("");
    document.getElementById("checks").innerHTML=(h.checks||[]).map(c=>
      `<tr class="${c.level}" data-check="${esc(c.name)}"><td>${esc(c.name)}</td><td>${c.level}</td><td>${esc(c.message)}</td></tr>`).join("");
    document.getElementById("status").textContent="live, "+stats.connections+" connections, updated "+new Date().toLocaleTimeString();
  }catch(e){document.getElementById("status").textContent="server unreachable ("+e.message+")";}
}
refresh();setInterval(refresh,1000);
</script>
</body></html>
)html";
}

}  // namespace chat
