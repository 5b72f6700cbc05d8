// Bulkhead web UI: live updates and the devices page's filter-as-you-type.
// Everything works without this file; it only saves reloads. No inline code
// anywhere (the CSP allows only this file), no HTML built from strings: a
// refresh takes the server's own rendering of the page.
(function () {
  'use strict';

  var live = document.body && document.body.getAttribute('data-live') === 'on';
  var pending = false;
  var timer = null;
  var busyRetry = null;

  function currentMain() {
    return document.querySelector('main');
  }

  // A form field has focus, or a form in the page holds edits not yet sent:
  // a refresh now would throw the homeowner's typing away.
  function editing() {
    var main = currentMain();
    if (!main) return true;
    var a = document.activeElement;
    if (a && a !== document.body && main.contains(a) && a.matches('input, select, textarea')) {
      return true;
    }
    var fields = main.querySelectorAll('input, select, textarea');
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === 'hidden' || f.type === 'submit') continue;
      if (f.type === 'checkbox' || f.type === 'radio') {
        if (f.checked !== f.defaultChecked) return true;
      } else if (f.tagName === 'SELECT') {
        for (var j = 0; j < f.options.length; j++) {
          if (f.options[j].selected !== f.options[j].defaultSelected) return true;
        }
      } else if (f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function refresh() {
    timer = null;
    if (editing()) {
      // Try again once the homeowner is done.
      pending = true;
      if (!busyRetry) busyRetry = setTimeout(function () { busyRetry = null; if (pending) schedule(); }, 3000);
      return;
    }
    pending = false;
    fetch(window.location.href, {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'X-Bulkhead-Live': '1' }
    }).then(function (res) {
      if (!res.ok || res.redirected) return null; // signed out, or an error page
      return res.text();
    }).then(function (html) {
      if (html === null || html === undefined) return;
      if (editing()) { pending = true; schedule(); return; }
      var doc = new DOMParser().parseFromString(html, 'text/html');
      var fresh = doc.querySelector('main');
      var main = currentMain();
      if (!fresh || !main) return;
      main.replaceWith(document.adoptNode(fresh));
      applyFilter();
    }).catch(function () { /* the next event tries again */ });
  }

  function schedule() {
    if (timer) return;
    // Events come in bursts (a device answers DHCP, then mDNS): one refresh.
    timer = setTimeout(refresh, 400);
  }

  if (live && window.EventSource && window.fetch && window.DOMParser) {
    // Close the stream when the page is left: the back/forward cache keeps
    // left pages alive, their streams would hold the browser's six connections
    // per host and the seventh page load would hang.
    var es = null;
    var connect = function () {
      es = new EventSource('/events');
      ['devices', 'alerts', 'vpn'].forEach(function (name) {
        es.addEventListener(name, schedule);
      });
    };
    connect();
    window.addEventListener('pagehide', function () {
      if (es) { es.close(); es = null; }
    });
    window.addEventListener('pageshow', function (e) {
      if (e.persisted && !es) { connect(); schedule(); }
    });
    document.addEventListener('focusout', function () {
      if (pending) setTimeout(function () { if (pending) schedule(); }, 200);
    });
  }

  // Devices page: hide rows that do not contain the search text while typing
  // (the form still filters on the server when sent).
  function applyFilter() {
    var input = document.getElementById('device-search');
    var table = document.getElementById('devices');
    if (!input || !table) return;
    var q = input.value.trim().toLowerCase();
    var rows = table.querySelectorAll('tbody tr[data-mac]');
    var shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var hit = !q || rows[i].textContent.toLowerCase().indexOf(q) !== -1;
      rows[i].hidden = !hit;
      if (hit) shown++;
    }
    var count = document.getElementById('device-count');
    if (count) {
      if (!count.hasAttribute('data-server-text')) count.setAttribute('data-server-text', count.textContent);
      count.textContent = q ? shown + ' shown' : count.getAttribute('data-server-text');
    }
  }

  document.addEventListener('input', function (e) {
    if (e.target && e.target.id === 'device-search') applyFilter();
  });
})();
