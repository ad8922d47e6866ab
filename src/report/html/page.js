// cargo-pgtest's HTML report: draws the timeline and the table of tests from the run's data (the
// element #run-data). Everything in view only: at 10,000 tests, bars narrower than a pixel are merged
// per lane, and the table renders only the rows scrolled into view.
(function () {
  'use strict';
  var began = performance.now();
  var data = JSON.parse(document.getElementById('run-data').textContent);
  var STATUS = data.statuses;
  var DB = data.databases;
  var PASSED = STATUS.indexOf('passed');
  var tests = data.tests;

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function secs(ms) {
    if (ms === null || ms === undefined) return '';
    var s = ms / 1000;
    if (s < 10) return s.toFixed(3) + 's';
    if (s < 120) return s.toFixed(1) + 's';
    var whole = Math.round(s);
    return Math.floor(whole / 60) + 'm ' + String(whole % 60).padStart(2, '0') + 's';
  }
  function name(i) { return data.binaries[tests[i][0]] + ' ' + tests[i][1]; }
  function label(i) {
    var t = tests[i];
    if (t[3]) return t[3];
    return { passed: 'PASS', failed: 'FAIL', timed_out: 'TIMEOUT', not_run: 'NOT RUN', ignored: 'IGNORED' }[STATUS[t[2]]] || '';
  }
  function statusClass(i) { return 'st-' + STATUS[tests[i][2]]; }
  function flaky(i) { return tests[i][2] === PASSED && tests[i][7] > 1; }
  function dbName(i) { var d = tests[i][5]; return d === null ? '' : DB[d]; }

  // ---- runs per test, for the details ----
  var runsOf = {};
  data.runs.forEach(function (r, k) { (runsOf[r[0]] = runsOf[r[0]] || []).push(k); });
  var checkOf = {};
  data.checks.forEach(function (c) { checkOf[c[0]] = c; });

  // ---- tooltip and details ----
  var tip = document.getElementById('tip');
  function showTip(html, event) {
    tip.innerHTML = html;
    tip.hidden = false;
    var x = event.clientX + 14, y = event.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) x = event.clientX - w - 14;
    if (y + h > window.innerHeight - 8) y = event.clientY - h - 14;
    tip.style.left = Math.max(4, x) + 'px';
    tip.style.top = Math.max(4, y) + 'px';
  }
  function hideTip() { tip.hidden = true; }

  function spark(values, now, slower, width, height) {
    var all = values.slice();
    if (now !== null && now !== undefined) all.push(now);
    if (all.length < 2) return '';
    var top = Math.max.apply(null, all) || 1;
    var step = (width - 4) / (all.length - 1);
    var points = all.map(function (v, n) {
      return (2 + n * step).toFixed(1) + ',' + (height - 2 - v / top * (height - 4)).toFixed(1);
    });
    var last = points[points.length - 1].split(',');
    return '<svg class="spark" width="' + width + '" height="' + height + '" viewBox="0 0 ' + width + ' ' + height + '">' +
      '<title>' + esc(all.map(secs).join(', ')) + '</title><polyline points="' + points.join(' ') + '"/>' +
      (now !== null && now !== undefined ? '<circle class="' + (slower ? 'slow' : '') + '" cx="' + last[0] + '" cy="' + last[1] + '" r="2.2"/>' : '') +
      '</svg>';
  }

  function runLine(k, n, of) {
    var r = data.runs[k];
    var parts = ['attempt ' + n + ' of ' + of, (STATUS[r[5]] || '').replace('_', ' ')];
    parts.push('started at ' + secs(r[2]), 'ran ' + secs(r[3] - r[2]));
    if (r[4] !== null) parts.push('waited ' + secs(r[4]) + ' for its database');
    parts.push('job slot ' + (r[1] + 1));
    return parts.join(', ');
  }

  function outputOf(i) {
    if (data.outputs[i] !== undefined) return data.outputs[i];
    var shown = document.querySelector('details.failure[data-test="' + i + '"] pre.output');
    return shown ? shown.textContent : '';
  }

  var detail = document.getElementById('detail');
  var selected = null;
  function showDetail(i) {
    var t = tests[i];
    var rows = [['Outcome', '<span class="o ' + statusClass(i) + '">' + esc(label(i)) + '</span>' +
      (flaky(i) ? ' <span class="badge flaky">FLAKY</span>' : '') + (t[9] ? ' <span class="badge slower">SLOWER</span>' : '')]];
    if (t[4] !== null) rows.push(['Time', secs(t[4])]);
    if (t[5] !== null) rows.push(['Database', esc(DB[t[5]])]);
    if (t[6] !== null) {
      var b = data.batches.filter(function (b) { return b[6] === t[6]; })[0];
      if (b) rows.push(['Ran in', esc(b[0]) + ' batch ' + t[6] + ' (' + esc(b[1]) + ', ' + b[5] + ' tests, ' + secs((b[3] || data.wall) - b[2]) + ')']);
    }
    (runsOf[i] || []).forEach(function (k, n, all) { rows.push([n ? '' : 'Attempts', esc(runLine(k, n + 1, all.length))]); });
    var check = checkOf[i];
    if (check) rows.push(['Check', secs(check[2] - check[1]) + ', ' + (check[3] ? 'untouched: handed on to a later test' : 'written to: dropped')]);
    if (t[8]) rows.push(['Last runs', spark(t[8], t[4], t[9], 160, 36) + ' ' + esc(t[8].map(secs).join(', '))]);
    if (t[9]) rows.push(['Median', secs(t[9]) + ' before: this run took ' + (t[4] / t[9]).toFixed(1) + '×']);
    if (t[10]) rows.push(['Kept', '<code class="psql">' + esc(t[10]) + '</code>']);
    var output = outputOf(i);
    document.getElementById('detail-body').innerHTML =
      '<h3><span class="bin">' + esc(data.binaries[t[0]]) + '</span> ' + esc(t[1]) + '</h3><table>' +
      rows.map(function (r) { return '<tr><td class="quiet">' + r[0] + '</td><td>' + r[1] + '</td></tr>'; }).join('') +
      '</table>' + (output ? '<pre class="output">' + esc(output) + '</pre>' : '<p class="quiet">(no output)</p>');
    detail.hidden = false;
    selected = i;
    drawTimeline();
  }
  document.getElementById('detail-close').addEventListener('click', function () {
    detail.hidden = true;
    selected = null;
    drawTimeline();
  });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && !detail.hidden) document.getElementById('detail-close').click();
  });

  // ---- the timeline ----
  var tl = document.getElementById('tl');
  var LANES = Math.max(1, data.lanes);
  var GUTTER = 58, AXIS = 18, PHASE = 14, LANE = 20, BAR = 14;
  var lanesTop = AXIS + PHASE + 4;
  var height = lanesTop + LANES * LANE + 6;
  var testsPhase = data.phases.filter(function (p) { return p[0] === 'tests'; })[0];
  var firstStart = Infinity, lastEnd = 0;
  data.runs.forEach(function (r) {
    firstStart = Math.min(firstStart, r[2] - (r[4] || 0));
    lastEnd = Math.max(lastEnd, r[3]);
  });
  data.batches.forEach(function (b) {
    firstStart = Math.min(firstStart, b[2]);
    lastEnd = Math.max(lastEnd, b[3] || data.wall);
  });
  function testsView() {
    var from = firstStart, to = lastEnd;
    if (!(to > from)) {
      from = testsPhase ? testsPhase[1] : 0;
      to = testsPhase ? testsPhase[2] : data.wall;
    }
    var pad = Math.max((to - from) * 0.02, 1);
    return [Math.max(0, from - pad), to + pad];
  }
  var view = testsView();
  var drawn = { runs: [], batches: [] };

  function niceStep(span, most) {
    var raw = span / most, power = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var n = 0; n < steps.length; n++) if (steps[n] * power >= raw) return steps[n] * power;
    return 10 * power;
  }

  function drawTimeline() {
    var width = Math.max(300, tl.clientWidth);
    var plot = width - GUTTER - 8;
    var v0 = view[0], v1 = view[1], scale = plot / (v1 - v0);
    function x(t) { return GUTTER + (t - v0) * scale; }
    var parts = [];
    for (var lane = 0; lane < LANES; lane++) {
      var y = lanesTop + lane * LANE;
      if (lane % 2) parts.push('<rect class="lane-alt" x="' + GUTTER + '" y="' + y + '" width="' + plot + '" height="' + LANE + '"/>');
      parts.push('<text class="lane-label" x="6" y="' + (y + 14) + '">job ' + (lane + 1) + '</text>');
    }
    var step = niceStep(v1 - v0, Math.max(2, Math.floor(plot / 90)));
    for (var t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      var tx = x(t).toFixed(1);
      parts.push('<line class="tick" x1="' + tx + '" x2="' + tx + '" y1="' + (AXIS - 4) + '" y2="' + height + '"/>' +
        '<text class="axis" x="' + tx + '" y="12" text-anchor="middle">' + secs(t).replace(/\.?0+s$/, 's') + '</text>');
    }
    data.phases.forEach(function (p) {
      var a = Math.max(x(p[1]), GUTTER), b = Math.min(x(p[2]), width - 8);
      if (b <= a) return;
      parts.push('<rect class="phase ph-' + esc(p[0]) + '" x="' + a.toFixed(1) + '" y="' + AXIS + '" width="' + (b - a).toFixed(1) +
        '" height="' + PHASE + '"><title>' + esc(p[3]) + ' ' + secs(p[2] - p[1]) + '</title></rect>');
      if (b - a > 60) parts.push('<text class="band-label" x="' + (a + 3).toFixed(1) + '" y="' + (AXIS + 11) + '" style="fill:#fff">' + esc(p[3]) + '</text>');
    });
    drawn.batches = [];
    data.batches.forEach(function (b, k) {
      var end = b[3] === null ? data.wall : b[3];
      if (end < v0 || b[2] > v1) return;
      var a = Math.max(x(b[2]), GUTTER - 2), e = Math.min(x(end), width);
      drawn.batches.push(k);
      // A band over each run of neighbouring lanes the batch held; the label on the first.
      var lanes = b[7].filter(function (lane) { return lane < LANES; }).sort(function (p, q) { return p - q; });
      lanes.forEach(function (lane, i) {
        if (i > 0 && lanes[i - 1] === lane - 1) return;
        var span = 1;
        while (i + span < lanes.length && lanes[i + span] === lane + span) span++;
        var y = lanesTop + lane * LANE + 1, h = span * LANE - 2;
        parts.push('<rect class="batch b-' + esc(b[0]) + '" data-b="' + k + '" x="' + a.toFixed(1) + '" y="' + y + '" width="' + Math.max(1, e - a).toFixed(1) + '" height="' + h + '" rx="3"/>');
        if (i === 0 && e - a > 90) parts.push('<text class="batch-label" x="' + (a + 3).toFixed(1) + '" y="' + (y + h - 3) + '">' + esc(b[0]) + ' · ' + esc(b[1]) + ' (' + b[5] + ')</text>');
      });
    });
    var visible = [];
    data.runs.forEach(function (r, k) {
      if (r[3] >= v0 && r[2] - (r[4] || 0) <= v1) visible.push(k);
    });
    var merge = visible.length > 3000;
    var buckets = {};
    drawn.runs = [];
    visible.forEach(function (k) {
      var r = data.runs[k];
      var a = x(r[2]), e = x(r[3]), y = lanesTop + r[1] * LANE + (LANE - BAR) / 2;
      var status = r[6] ? STATUS[r[5]] : (r[5] === PASSED ? 'passed' : 'retry');
      if (merge && e - a < 1.5 && r[0] !== selected) {
        var key = r[1] + ':' + Math.floor(a / 2);
        var bucket = buckets[key] || (buckets[key] = { lane: r[1], x: Math.floor(a / 2) * 2, count: 0, worst: PASSED });
        bucket.count++;
        if (r[5] !== PASSED && r[5] < bucket.worst) bucket.worst = r[5];
        return;
      }
      if (r[4] !== null && r[4] > 0) {
        var w0 = x(r[2] - r[4]);
        parts.push('<rect class="wait" x="' + w0.toFixed(1) + '" y="' + (y + 3) + '" width="' + Math.max(0.5, a - w0).toFixed(1) + '" height="' + (BAR - 6) + '"/>');
      }
      var cls = 'run st-' + status + (r[6] ? ' last' : ' attempt') + (r[0] === selected ? ' sel' : '');
      parts.push('<rect class="' + cls + '" data-r="' + k + '" x="' + a.toFixed(1) + '" y="' + y + '" width="' + Math.max(1, e - a).toFixed(1) + '" height="' + BAR + '" rx="1.5"/>');
      var check = r[6] && checkOf[r[0]];
      if (check) {
        var c0 = x(check[1]), c1 = x(check[2]);
        parts.push('<rect class="check" x="' + c0.toFixed(1) + '" y="' + (y + BAR) + '" width="' + Math.max(1, c1 - c0).toFixed(1) + '" height="2"/>');
      }
      drawn.runs.push(k);
    });
    Object.keys(buckets).forEach(function (key) {
      var b = buckets[key], y = lanesTop + b.lane * LANE + (LANE - BAR) / 2;
      parts.push('<rect class="run agg st-' + STATUS[b.worst] + '" data-agg="' + b.count + '" x="' + b.x + '" y="' + y + '" width="2" height="' + BAR + '"/>');
    });
    tl.innerHTML = '<svg viewBox="0 0 ' + width + ' ' + height + '" width="' + width + '" height="' + height + '">' + parts.join('') + '</svg>';
    tl.dataset.bars = String(drawn.runs.length);
  }

  function zoom(factor, at) {
    var v0 = view[0], v1 = view[1];
    var span = Math.max(0.05, Math.min(data.wall * 1.2 + 1, (v1 - v0) * factor));
    var anchor = at === undefined ? (v0 + v1) / 2 : at;
    var left = (anchor - v0) / (v1 - v0);
    view = [anchor - span * left, anchor - span * left + span];
    drawTimeline();
  }
  function timeAt(clientX) {
    var box = tl.getBoundingClientRect();
    var plot = box.width - GUTTER - 8;
    return view[0] + (clientX - box.left - GUTTER) / plot * (view[1] - view[0]);
  }
  tl.addEventListener('wheel', function (e) {
    e.preventDefault();
    zoom(e.deltaY > 0 ? 1.25 : 0.8, timeAt(e.clientX));
  }, { passive: false });
  var drag = null;
  tl.addEventListener('mousedown', function (e) { drag = { x: e.clientX, view: view.slice(), moved: false }; });
  window.addEventListener('mouseup', function () { setTimeout(function () { drag = null; }, 0); });
  window.addEventListener('mousemove', function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x;
    if (Math.abs(dx) > 3) drag.moved = true;
    if (!drag.moved) return;
    var per = (drag.view[1] - drag.view[0]) / (tl.clientWidth - GUTTER - 8);
    view = [drag.view[0] - dx * per, drag.view[1] - dx * per];
    hideTip();
    drawTimeline();
  });
  tl.addEventListener('mousemove', function (e) {
    if (drag && drag.moved) return;
    var target = e.target;
    if (target.dataset && target.dataset.r !== undefined) {
      var r = data.runs[+target.dataset.r], i = r[0], all = runsOf[i] || [];
      var n = all.indexOf(+target.dataset.r) + 1;
      showTip('<b>' + esc(name(i)) + '</b>' + esc(label(i)) + (dbName(i) ? ' · ' + esc(dbName(i)) + ' database' : '') +
        '<br>' + esc(runLine(+target.dataset.r, n, all.length)), e);
    } else if (target.dataset && target.dataset.agg !== undefined) {
      showTip(target.dataset.agg + ' tests here: zoom in to tell them apart', e);
    } else if (target.dataset && target.dataset.b !== undefined) {
      var b = data.batches[+target.dataset.b];
      showTip('<b>' + esc(b[0]) + ' batch ' + b[6] + ': ' + esc(b[1]) + '</b>' + b[5] + ' tests in one process on ' + b[4] +
        ' job slot(s), ' + secs((b[3] === null ? data.wall : b[3]) - b[2]) + ', from ' + secs(b[2]), e);
    } else {
      hideTip();
    }
  });
  tl.addEventListener('mouseleave', hideTip);
  tl.addEventListener('click', function (e) {
    if (drag && drag.moved) return;
    var r = e.target.dataset && e.target.dataset.r;
    if (r !== undefined) showDetail(data.runs[+r][0]);
  });
  document.querySelectorAll('[data-zoom]').forEach(function (button) {
    button.addEventListener('click', function () {
      var how = button.dataset.zoom;
      if (how === 'in') zoom(0.5);
      else if (how === 'out') zoom(2);
      else {
        view = how === 'all' ? [0, data.wall] : testsView();
        drawTimeline();
      }
    });
  });
  window.addEventListener('resize', function () { drawTimeline(); });

  // ---- the table ----
  var ROW = 25;
  var wrap = document.getElementById('table');
  var columns = [
    ['status', 'Outcome', '10%'], ['name', 'Test', '38%'], ['time', 'Time', '9%'], ['attempts', 'Attempts', '8%'],
    ['db', 'Database', '9%'], ['wait', 'DB wait', '9%'], ['start', 'Started', '8%'], ['history', 'Last runs', '9%']
  ];
  var lastRun = {};
  data.runs.forEach(function (r) { if (r[6]) lastRun[r[0]] = r; });
  var rank = { failed: 0, crashed: 1, timed_out: 2, not_run: 3, passed: 4, ignored: 5 };
  var keys = {
    status: function (i) { return rank[STATUS[tests[i][2]]] * 2 - (flaky(i) ? 1 : 0); },
    name: function (i) { return name(i); },
    time: function (i) { return tests[i][4] === null ? -1 : tests[i][4]; },
    attempts: function (i) { return tests[i][7]; },
    db: function (i) { return dbName(i); },
    wait: function (i) { var r = lastRun[i]; return r && r[4] !== null ? r[4] : -1; },
    start: function (i) { var r = lastRun[i]; return r ? r[2] : Infinity; },
    history: function (i) { return tests[i][9] ? tests[i][4] / tests[i][9] : 0; }
  };
  var sort = [['status', 1], ['time', -1]];
  var order = [];
  wrap.innerHTML = '<table><colgroup>' + columns.map(function (c) { return '<col style="width:' + c[2] + '">'; }).join('') +
    '</colgroup><thead><tr>' + columns.map(function (c) { return '<th data-key="' + c[0] + '">' + c[1] + '</th>'; }).join('') +
    '</tr></thead><tbody></tbody></table>';
  var tbody = wrap.querySelector('tbody');
  var filter = document.getElementById('filter'), fStatus = document.getElementById('f-status');
  var fDb = document.getElementById('f-db'), fSlower = document.getElementById('f-slower');

  function compute() {
    var text = filter.value.trim().toLowerCase();
    var status = fStatus.value, db = fDb.value, slower = fSlower.checked;
    order = [];
    for (var i = 0; i < tests.length; i++) {
      if (status && STATUS[tests[i][2]] !== status) continue;
      if (db && dbName(i) !== db) continue;
      if (slower && !tests[i][9]) continue;
      if (text && name(i).toLowerCase().indexOf(text) < 0) continue;
      order.push(i);
    }
    var cached = order.map(function (i) { return sort.map(function (s) { return keys[s[0]](i); }); });
    var index = order.map(function (_, n) { return n; });
    index.sort(function (a, b) {
      for (var s = 0; s < sort.length; s++) {
        var x = cached[a][s], y = cached[b][s];
        if (x < y) return -sort[s][1];
        if (x > y) return sort[s][1];
      }
      return a - b;
    });
    order = index.map(function (n) { return order[n]; });
    document.getElementById('shown').textContent = order.length === tests.length ? '' : order.length + ' of ' + tests.length + ' shown';
    wrap.querySelectorAll('th').forEach(function (th) {
      th.className = th.dataset.key === sort[0][0] ? (sort[0][1] > 0 ? 'asc' : 'desc') : '';
    });
    renderRows();
  }

  function row(i) {
    var t = tests[i], r = lastRun[i];
    var badges = (flaky(i) ? '<span class="badge flaky">FLAKY</span>' : '') + (t[9] ? '<span class="badge slower">SLOWER</span>' : '');
    return '<tr class="row" data-i="' + i + '"><td><span class="o ' + statusClass(i) + '">' + esc(label(i)) + '</span>' + badges + '</td>' +
      '<td title="' + esc(name(i)) + '"><span class="bin">' + esc(data.binaries[t[0]]) + '</span> ' + esc(t[1]) + '</td>' +
      '<td class="num">' + secs(t[4]) + '</td><td class="num">' + (t[7] || '') + '</td><td>' + esc(dbName(i)) + '</td>' +
      '<td class="num">' + (r && r[4] !== null ? secs(r[4]) : '') + '</td><td class="num">' + (r ? secs(r[2]) : '') + '</td>' +
      '<td>' + (t[8] ? spark(t[8], t[4], t[9], 84, 18) : '') + '</td></tr>';
  }

  function renderRows() {
    var top = Math.max(0, wrap.scrollTop - 25);
    var first = Math.max(0, Math.floor(top / ROW) - 10);
    var count = Math.ceil(wrap.clientHeight / ROW) + 30;
    var last = Math.min(order.length, first + count);
    var html = '<tr style="height:' + first * ROW + 'px"></tr>';
    for (var n = first; n < last; n++) html += row(order[n]);
    html += '<tr style="height:' + (order.length - last) * ROW + 'px"></tr>';
    tbody.innerHTML = html;
  }

  var scheduled = false;
  wrap.addEventListener('scroll', function () {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(function () { scheduled = false; renderRows(); });
  });
  wrap.querySelector('thead').addEventListener('click', function (e) {
    var key = e.target.dataset.key;
    if (!key) return;
    var direction = sort[0][0] === key ? -sort[0][1] : (key === 'name' || key === 'status' ? 1 : -1);
    sort = [[key, direction]].concat(sort.filter(function (s) { return s[0] !== key; })).slice(0, 2);
    compute();
  });
  tbody.addEventListener('click', function (e) {
    var tr = e.target.closest('tr.row');
    if (tr) showDetail(+tr.dataset.i);
  });
  [filter, fStatus, fDb, fSlower].forEach(function (input) { input.addEventListener('input', compute); });

  drawTimeline();
  compute();
  document.documentElement.dataset.ready = 'true';
  document.documentElement.dataset.renderMs = String(Math.round(performance.now() - began));
})();
