/* Admin dashboard: metrics, chart, articles, content gaps, idea candidates and learned aliases.
 * The admin token is typed once and kept in sessionStorage (this tab only); every call sends it
 * as a Bearer token. All text from the server goes into the page with textContent. */
(function () {
  "use strict";
  var TOKEN_KEY = "deflect-admin-token";
  // Verdicts (yes, no, tickets after opening) before an article can rank as weak.
  var MIN_VERDICTS = 3;
  // Promote and merge make the candidate's askers the idea's voters (told when it ships) and its
  // questions the idea's aliases; nothing takes that back, so a stray click is asked about first.
  var NO_UNDO = "Its askers become the idea's voters and hear when it ships, and its questions will find the idea. " +
    "This cannot be undone.";
  var $ = function (selector) { return document.querySelector(selector); };
  var loginCard = $("[data-admin-login]");
  var loginForm = $("[data-login-form]");
  var loginError = $("[data-login-error]");
  var tokenField = $("[data-deflect-token]");
  var dashboard = $("[data-admin-dashboard]");
  var message = $("[data-dash-message]");
  var period = $("[data-period]");
  var titles = {};
  var titlesLoaded = false;  // once /api/articles answered, an id not in titles is an article removed since
  var ideas = [];

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }
  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token lives until reload */ }
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function ApiFailure(status, body) {
    var error = (body && body.error) || {};
    this.status = status;
    this.message = error.message || ("HTTP " + status);
    this.field = error.field || null;
    this.ideaId = error.idea_id || null;  // a 409 on title: the idea that has that title already
  }

  function api(method, path, body) {
    var options = { method: method, headers: { Authorization: "Bearer " + token() } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!response.ok) throw new ApiFailure(response.status, data);
        return data;
      });
    });
  }

  /** Show a message; with `focus`, move keyboard focus to it (the control that was used is gone or disabled). */
  function say(text, kind, focus) {
    message.hidden = !text;
    message.textContent = text || "";
    message.className = "notice" + (kind === "error" ? " notice-error" : "");
    if (focus && text) {
      message.setAttribute("tabindex", "-1");
      message.focus();
    }
  }

  function unavailable(target, what, error) {
    target.textContent = "";
    var text = error && error.status === 404
      ? what + " not available on this server yet."
      : "Could not load " + what.replace(/ (is|are)$/, "").toLowerCase() + ": " + (error && error.message ? error.message : "network error") + ".";
    target.appendChild(el("p", "muted", text));
  }

  // --- formatting ------------------------------------------------------------------------
  function num(value) {
    return typeof value === "number" && isFinite(value) ? value.toLocaleString("en-US") : "–";
  }
  function pct(value) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    var p = value * 100;
    return (p > 0 && p < 10 ? p.toFixed(1) : Math.round(p).toString()) + "%";
  }
  function toDate(value) {
    if (value == null || value === "") return null;
    if (typeof value === "number") return new Date(value < 1e12 ? value * 1000 : value);
    var parsed = Date.parse(value);
    return isNaN(parsed) ? null : new Date(parsed);
  }
  function shortDate(value) {
    var d = toDate(value);
    if (!d) return value == null ? "" : String(value);
    return d.toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  }
  function first() {
    for (var i = 0; i < arguments.length; i++) if (arguments[i] != null) return arguments[i];
    return null;
  }

  function table(headers, rows) {
    var t = el("table", "data");
    var head = el("tr");
    headers.forEach(function (h) {
      var th = el("th", h.num ? "num" : "", h.hidden ? "" : h.label);
      if (h.hidden) th.appendChild(el("span", "visually-hidden", h.label)); // named for screen readers only
      th.scope = "col";
      head.appendChild(th);
    });
    t.appendChild(el("thead")).appendChild(head);
    var body = t.appendChild(el("tbody"));
    rows.forEach(function (cells) {
      var tr = body.appendChild(el("tr"));
      cells.forEach(function (cell, i) {
        var td = tr.appendChild(el("td", headers[i].num ? "num" : ""));
        if (cell instanceof Node) td.appendChild(cell);
        else td.textContent = cell == null ? "" : String(cell);
      });
    });
    return t;
  }

  function articleLink(id) {
    if (titlesLoaded && !titles.hasOwnProperty(id)) {
      // Removed or renamed since (its figures and aliases stay under the old id): no link to a 404.
      var gone = el("span", "", String(id) + " ");
      gone.setAttribute("data-article-gone", "");
      gone.appendChild(el("span", "status", "not in the KB"));
      return gone;
    }
    var a = el("a", "", titles[id] || id);
    a.href = "/articles/" + String(id).split("/").map(encodeURIComponent).join("/");
    return a;
  }

  // --- metrics ---------------------------------------------------------------------------
  /** The chosen period as {since, until} Dates (null: open): the last N days up to now, or a
   * calendar month in UTC (the days the series and `deflect metrics` count in), this one or the last. */
  function periodRange() {
    var now = new Date();
    var monthStart = function (back) { return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - back, 1)); };
    if (period.value === "this-month") return { since: monthStart(0), until: null };
    if (period.value === "last-month") return { since: monthStart(1), until: monthStart(0) };
    var days = parseInt(period.value, 10);
    return { since: days ? new Date(now.getTime() - days * 86400 * 1000) : null, until: null };
  }

  function periodQuery() {
    var range = periodRange();
    var params = [];
    if (range.since) params.push("since=" + encodeURIComponent(range.since.toISOString()));
    if (range.until) params.push("until=" + encodeURIComponent(range.until.toISOString()));
    return params.length ? "?" + params.join("&") : "";
  }

  function setMetric(name, value, text) {
    Array.prototype.forEach.call(document.querySelectorAll('[data-deflect-metric="' + name + '"]'), function (node) {
      node.textContent = text;
      node.setAttribute("data-value", value == null ? "" : String(value));
    });
  }

  function showMetrics(metrics) {
    var t = metrics.totals || {};
    var searches = t.searches || 0;
    var confirmed = t.confirmed_deflections;
    var assumed = t.assumed_deflections;
    var events = metrics.events || {};
    var answered = t.answered_rate;
    var noAnswer = first(t.no_answer_rate, typeof answered === "number" && searches ? 1 - answered : null);
    var confirmedRate = first(t.confirmed_deflection_rate, searches && typeof confirmed === "number" ? confirmed / searches : null);
    setMetric("searches", t.searches, num(t.searches));
    setMetric("deflection_rate", t.deflection_rate, pct(t.deflection_rate));
    setMetric("confirmed_deflection_rate", confirmedRate, pct(confirmedRate));
    var deflections = typeof confirmed === "number" && typeof assumed === "number" ? confirmed + assumed : null;
    setMetric("deflections", deflections, num(deflections));
    setMetric("confirmed_deflections", confirmed, num(confirmed));
    setMetric("assumed_deflections", assumed, num(assumed));
    setMetric("assumed_pending", t.assumed_pending, num(t.assumed_pending));
    $("[data-pending]").hidden = !t.assumed_pending;
    setMetric("tickets", t.tickets, num(t.tickets));
    setMetric("answered_rate", answered, pct(answered));
    setMetric("no_answer_rate", noAnswer, pct(noAnswer));
    setMetric("answered_by_article_rate", t.answered_by_article_rate, pct(t.answered_by_article_rate));
    setMetric("answered_by_idea_rate", t.answered_by_idea_rate, pct(t.answered_by_idea_rate));
    setMetric("click_rate", t.click_rate, pct(t.click_rate));
    setMetric("helpful_events", events.helpful, num(events.helpful));

    var points = dailyPoints(metrics.series || []);
    window.DeflectChart.render($("[data-chart]"), points, { empty: "No searches in this period yet." });

    showArticles(metrics.articles || []);
    showGaps(metrics.content_gaps || []);
  }

  /** One point per day from the period start (or the first search) to today, empty days included. */
  function dailyPoints(series) {
    var byDay = {};
    series.forEach(function (p) {
      var d = toDate(first(p.date, p.day, p.period, p.start));
      if (d) byDay[d.toISOString().slice(0, 10)] = p;
    });
    var days = Object.keys(byDay).sort();
    if (!days.length) return [];
    var range = periodRange();
    // The period's first (partial) day too: the figures above count from its very start.
    var start = range.since || new Date(days[0] + "T00:00:00Z");
    var end = range.until ? new Date(range.until.getTime() - 1) : new Date();
    var points = [];
    for (var d = new Date(start.toISOString().slice(0, 10) + "T00:00:00Z"); d <= end && points.length < 400;
      d = new Date(d.getTime() + 86400000)) {
      var key = d.toISOString().slice(0, 10);
      var p = byDay[key];
      points.push({ label: shortDate(key), bars: p ? first(p.searches, 0) : 0, line: p ? first(p.deflection_rate, null) : null });
    }
    return points;
  }

  function articleRow(a) {
    var tickets = first(a.tickets_after_click, a.tickets_after_shown, a.tickets, 0);
    var effective = a.effectiveness == null ? "–" : pct(a.effectiveness);
    var cell = el("span", "", effective);
    cell.title = num(a.helpful) + " helpful, " + num(a.not_helpful) + " not helpful, " + num(tickets) + " tickets after opening it";
    return [articleLink(a.id), num(a.impressions), num(a.clicks), num(a.helpful) + " / " + num(a.not_helpful), cell];
  }

  function showArticles(items) {
    var headers = [{ label: "Article" }, { label: "Shown", num: true }, { label: "Opened", num: true },
      { label: "Yes / no", num: true }, { label: "Effective", num: true }];
    var shown = items.filter(function (a) { return (a.impressions || 0) > 0; });
    // Top: what customers confirm or at least open. Weakest: the rest, least effective first.
    var top = shown.filter(function (a) { return (a.helpful || 0) + (a.clicks || 0) > 0 && (a.effectiveness == null || a.effectiveness >= 0.5); })
      .sort(function (a, b) {
        return (b.helpful || 0) - (a.helpful || 0) || (b.clicks || 0) - (a.clicks || 0) || (b.impressions || 0) - (a.impressions || 0);
      }).slice(0, 5);
    var topIds = top.map(function (a) { return a.id; });
    // An effectiveness from one or two verdicts says little: such an article ranks as unknown (0.5).
    var judged = function (a) {
      var verdicts = (a.helpful || 0) + (a.not_helpful || 0) + first(a.tickets_after_click, 0);
      return a.effectiveness == null || verdicts < MIN_VERDICTS ? 0.5 : a.effectiveness;
    };
    var weak = shown.filter(function (a) { return topIds.indexOf(a.id) < 0; }).sort(function (a, b) {
      var ea = judged(a);
      var eb = judged(b);
      return ea - eb || (b.not_helpful || 0) - (a.not_helpful || 0) || (b.impressions || 0) - (a.impressions || 0);
    }).slice(0, 5);
    var topBox = $("[data-top-articles]");
    var weakBox = $("[data-weak-articles]");
    topBox.textContent = weakBox.textContent = "";
    if (!top.length) topBox.appendChild(el("p", "muted", "No article was opened or marked helpful in this period."));
    else topBox.appendChild(table(headers, top.map(articleRow)));
    if (!weak.length) weakBox.appendChild(el("p", "muted", "Nothing stands out as weak yet."));
    else weakBox.appendChild(table(headers, weak.map(articleRow)));
  }

  function showGaps(gaps) {
    var box = $("[data-content-gaps]");
    box.textContent = "";
    if (!gaps.length) {
      box.appendChild(el("p", "muted", "No unanswered questions in this period. Nice."));
      return;
    }
    var list = box.appendChild(el("ul", "gap-list"));
    gaps.forEach(function (gap) {
      var li = list.appendChild(el("li"));
      var left = li.appendChild(el("div"));
      left.appendChild(el("strong", "", first(gap.label, gap.query, gap.text, "(unlabelled)")));
      var examples = (gap.queries || gap.examples || []).slice(0, 3).map(function (q) {
        return typeof q === "string" ? q : first(q.text, q.query, "");
      }).filter(Boolean);
      if (examples.length) left.appendChild(el("div", "muted", "e.g. " + examples.join(" · ")));
      if (gap.answered) {  // an answer was shown, and a ticket or a "No" followed: rewrite rather than add
        var missed = el("div", "muted", num(gap.answered) + " of these got an answer, then a ticket or a “No”");
        if (gap.answered_with) {
          missed.appendChild(document.createTextNode(": does "));
          missed.appendChild(articleLink(gap.answered_with));
          missed.appendChild(document.createTextNode(" miss the point?"));
        } else {
          missed.appendChild(document.createTextNode(": does the article shown miss the point?"));
        }
        missed.setAttribute("data-gap-answered", String(gap.answered));
        left.appendChild(missed);
      }
      if (gap.answered_by) {  // an article published since answers its questions: the gap is closed
        li.setAttribute("data-answered-by", gap.answered_by);
        var closed = el("div", "muted", "Answered since by ");
        closed.appendChild(articleLink(gap.answered_by));
        left.appendChild(closed);
      }
      if (gap.shipped_idea) {  // the feature exists now; no article answers its questions yet
        left.appendChild(el("div", "muted", "Asked since idea “" + ideaTitle(gap.shipped_idea) + "” shipped: write an article?"));
      }
      var n = first(gap.count, gap.searches);  // the period's searches, as the list is ranked
      var when = gap.last_seen != null ? " · last " + shortDate(gap.last_seen) : "";
      li.appendChild(el("span", "count", num(n) + (n === 1 ? " search" : " searches") + when));
    });
  }

  // --- idea candidates -------------------------------------------------------------------
  function candidateActions(c) {
    var box = el("div", "candidate-actions");
    if (c.status && c.status !== "new") return box;
    var label = String(c.label || "").replace(/\u2026$/, "").trim();
    // Empty, for the team to write: the label is one customer's own question (it may hold a name),
    // and the idea's title and id are public.
    var title = el("input");
    title.type = "text";
    title.placeholder = "Title for the public board";
    title.setAttribute("aria-label", "Title of the new idea");
    title.setAttribute("data-promote-title", "");
    var promote = el("button", "btn btn-primary btn-small", "Promote to idea");
    promote.type = "button";
    promote.setAttribute("data-action", "promote");
    var syncPromote = function () { promote.disabled = !title.value.trim(); };
    title.addEventListener("input", syncPromote);
    syncPromote();
    promote.addEventListener("click", function () {
      var chosen = title.value.trim();
      if (!chosen) return;
      if (!window.confirm("Promote “" + label + "” to a new idea “" + chosen + "”? " + NO_UNDO)) return;
      review(c, "promote", withLeftOut(c, { title: chosen }), "Promoted “" + chosen + "” to a new idea.");
    });
    var select = el("select");
    select.setAttribute("aria-label", "Idea to merge into");
    var placeholder = el("option", "", "Merge into idea…");
    placeholder.value = "";
    select.appendChild(placeholder);
    var nearestIdea = c.nearest && (c.nearest.type || c.nearest.item_type) === "idea" ? c.nearest.id : null;
    ideas.filter(function (i) { return ["open", "planned", "in_progress"].indexOf(i.status) >= 0; })
      .forEach(function (i) {
        var option = el("option", "", i.title);
        option.value = i.id;
        if (i.id === nearestIdea) option.selected = true;
        select.appendChild(option);
      });
    var merge = el("button", "btn btn-small", "Merge");
    merge.type = "button";
    merge.setAttribute("data-action", "merge");
    var syncMerge = function () { merge.disabled = !select.value; };
    select.addEventListener("change", syncMerge);
    syncMerge();
    merge.addEventListener("click", function () {
      if (!select.value) return;
      var into = select.options[select.selectedIndex].text;
      if (!window.confirm("Merge “" + label + "” into “" + into + "”? " + NO_UNDO)) return;
      review(c, "merge", withLeftOut(c, { idea_id: select.value }), "Merged into “" + select.options[select.selectedIndex].text + "”.");
    });
    var dismiss = el("button", "btn btn-quiet btn-small btn-danger", "Dismiss");
    dismiss.type = "button";
    dismiss.setAttribute("data-action", "dismiss");
    dismiss.addEventListener("click", function () {
      // Out of the review list (it returns once it has grown); promote or merge still work on it from
      // `deflect clusters` or the API: one stray click is not enough all the same.
      if (!window.confirm("Dismiss “" + label + "”? It leaves the review list and comes back here only if many " +
        "more people ask (deflect clusters list --status dismissed lists it).")) return;
      review(c, "dismiss", {}, "Dismissed “" + label + "”.");
    });
    [title, promote, select, merge, dismiss].forEach(function (n) {
      n.setAttribute("aria-describedby", "candidate-" + c.id);
      box.appendChild(n);
    });
    return box;
  }

  /** Distinct example questions, most frequent first, with how often each was asked. */
  function examples(queries, limit) {
    var counts = {};
    var order = [];
    queries.forEach(function (q) {
      var text = typeof q === "string" ? q : first(q.text, q.query, "");
      if (!text) return;
      var key = text.trim().toLowerCase().replace(/\s+/g, " ");
      if (!(key in counts)) {
        counts[key] = { text: text.trim(), n: 0, ids: [], article: q && q.answered_by_article };
        order.push(key);
      }
      counts[key].n += 1;
      if (q && q.search_id) counts[key].ids.push(q.search_id);
      // Not taught only when an article answered every time it was asked (review._member_questions).
      if (!(q && q.answered_by_article)) counts[key].article = null;
    });
    return order.map(function (k) { return counts[k]; })
      .sort(function (a, b) { return b.n - a.n; }).slice(0, limit);
  }

  function ideaTitle(id) {
    var found = ideas.filter(function (i) { return i.id === id; })[0];
    return found ? found.title : id;
  }

  /** body plus `exclude`: the search ids of the questions the admin unticked on the card. */
  function withLeftOut(candidate, body) {
    var card = document.querySelector('[data-candidate-id="' + CSS.escape(String(candidate.id)) + '"]');
    var ids = [];
    Array.prototype.forEach.call(card ? card.querySelectorAll("[data-teach]") : [], function (box) {
      if (!box.checked) ids = ids.concat(box.getAttribute("data-teach").split(" ").filter(Boolean));
    });
    if (ids.length) body.exclude = ids;
    return body;
  }

  function review(candidate, action, body, done) {
    var buttons = document.querySelectorAll('[data-candidate-id="' + CSS.escape(String(candidate.id)) + '"] button');
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    api("POST", "/api/clusters/" + encodeURIComponent(candidate.id) + "/" + action, body)
      .then(function () {
        say(done, "", true);
        // The decision changes the candidates, the content gaps (reviewed ones are none) and the aliases.
        return loadIdeas().then(function () { return Promise.all([loadCandidates(), loadMetrics(), loadAliases()]); });
      })
      .catch(function (error) {
        Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
        if (action === "promote" && error && error.field === "title" && error.ideaId) {
          sameTitle(candidate, error);
          return;
        }
        handle(error, "Could not " + action + " the candidate");
      });
  }

  /** A promote refused because an idea has that title: say which, and offer it in the card's merge list. */
  function sameTitle(candidate, error) {
    var card = document.querySelector('[data-candidate-id="' + CSS.escape(String(candidate.id)) + '"]');
    var select = card && card.querySelector("select");
    var offered = select && Array.prototype.some.call(select.options, function (o) { return o.value === error.ideaId; });
    if (offered) {
      select.value = error.ideaId;
      select.dispatchEvent(new Event("change"));
    }
    say("Not promoted: this title is on the board already, as idea “" + ideaTitle(error.ideaId) + "”. " +
      (offered ? "Merge the candidate into it (selected in the card’s merge list), or promote it with another title."
        : "That idea is closed; promote the candidate with another title."), "error", true);
  }

  function showCandidates(list) {
    var box = $("[data-candidates]");
    box.textContent = "";
    var open = list.filter(function (c) { return !c.status || c.status === "new"; });
    var reviewed = list.length - open.length;
    if (!open.length) {
      box.appendChild(el("p", "muted", list.length
        ? "All " + reviewed + " candidates are reviewed."
        : "No candidates yet. Unanswered questions appear here after “Rebuild candidates”."));
    }
    open.concat(list.filter(function (c) { return c.status && c.status !== "new"; })).forEach(function (c) {
      var card = box.appendChild(el("article", "candidate"));
      card.setAttribute("data-candidate-id", c.id);
      card.setAttribute("data-status", c.status || "new");
      var head = card.appendChild(el("div", "candidate-head"));
      // A heading per card, naming the card and described on its controls: a screen-reader user
      // moves card to card, and hears which candidate "Promote to idea" or "Dismiss" acts on.
      var heading = head.appendChild(el("h3", "candidate-label", c.label || "(unlabelled)"));
      heading.id = "candidate-" + c.id;
      card.setAttribute("aria-labelledby", heading.id);
      var meta = [num(c.size) + (c.size === 1 ? " question" : " questions")];
      if (c.last_seen != null) meta.push("last " + shortDate(c.last_seen));
      if (c.requesters) meta.push(num(c.requesters) + (c.requesters === 1 ? " requester" : " requesters"));
      if (c.mrr) meta.push("$" + num(Math.round(c.mrr)) + " MRR");
      if (c.status && c.status !== "new") meta.push(c.status);
      head.appendChild(el("span", "candidate-meta", meta.join(" · ")));
      if (c.top_requesters && c.top_requesters.length) {
        // Who asks (highest MRR first) matters to a product team as much as how many.
        var who = c.top_requesters.map(function (p) {
          var name = p.customer_id && p.email ? p.customer_id + " (" + p.email + ")" : (p.email || p.customer_id || "?");
          return p.mrr ? name + " $" + num(Math.round(p.mrr)) : name;
        });
        var more = (c.requesters || 0) - c.top_requesters.length;
        card.appendChild(el("p", "muted candidate-people",
          "Asked by " + who.join(", ") + (more > 0 ? " and " + num(more) + " more" : "")));
      }
      if (c.keywords && c.keywords.length) {
        var kw = card.appendChild(el("div"));
        c.keywords.slice(0, 8).forEach(function (k) { kw.appendChild(el("span", "keyword", k)); });
      }
      var open = !c.status || c.status === "new";
      // A reviewed card shows the questions the decision kept (not those the admin left out).
      var asked = examples((c.queries || []).filter(function (q) { return open || !q.excluded; }), open ? Infinity : 4);
      if (asked.length && open) {
        // Promote and merge make these questions answers to the idea (aliases): the admin sees
        // every one and can leave out any that is not about it.
        var teach = card.appendChild(el("fieldset", "candidate-teach"));
        teach.appendChild(el("legend", "muted", "Questions that will find the idea; their askers hear when it ships (untick any that is not about it)"));
        var tl = teach.appendChild(el("ul", "candidate-queries"));
        asked.forEach(function (q) {
          var label = el("label");
          var box = el("input");
          box.type = "checkbox";
          box.checked = true;
          box.setAttribute("data-teach", q.ids.join(" "));
          label.appendChild(box);
          label.appendChild(document.createTextNode(" " + (q.n > 1 ? q.text + " (×" + q.n + ")" : q.text)));
          var item = tl.appendChild(el("li"));
          item.appendChild(label);
          if (q.article) {  // the KB answered it: it will not find the idea, but its asker still hears
            item.setAttribute("data-answered-by-article", q.article);
            item.appendChild(el("span", "muted", " — answered by “" + (titles[q.article] || q.article) + "”: will not find the idea"));
          }
        });
      } else if (asked.length) {
        var ul = card.appendChild(el("ul", "candidate-queries"));
        asked.forEach(function (q) { ul.appendChild(el("li", "", q.n > 1 ? q.text + " (×" + q.n + ")" : q.text)); });
      }
      if (c.idea_id && c.status !== "new") {
        var done = card.appendChild(el("p", "muted", (c.status === "merged" ? "Merged into " : "Became ")));
        var link = el("a", "", "idea “" + ideaTitle(c.idea_id) + "”");
        link.href = "/ideas#idea-" + encodeURIComponent(c.idea_id);
        done.appendChild(link);
      }
      if (c.answered_by && open) {  // the KB answers it now: its askers were told; an idea may be moot
        var answeredBy = card.appendChild(el("p", "notice candidate-answered", "An article published since answers these questions: "));
        answeredBy.appendChild(articleLink(c.answered_by));
        answeredBy.appendChild(document.createTextNode(". Its askers who left an email or customer id are being told. Dismiss it, unless the feature is still wanted."));
        answeredBy.setAttribute("data-candidate-answered-by", c.answered_by);
      }
      if (c.nearest && c.nearest.id) {
        var near = (c.nearest.type || c.nearest.item_type || "item") + " “" + (c.nearest.title || titles[c.nearest.id] || c.nearest.id) + "”";
        var score = typeof c.nearest.score === "number" ? " (" + pct(c.nearest.score) + " match)" : "";
        card.appendChild(el("p", "muted", "Closest existing " + near + score));
      }
      card.appendChild(candidateActions(c));
    });
  }

  // --- aliases ---------------------------------------------------------------------------
  function showAliases(list) {
    var box = $("[data-aliases]");
    box.textContent = "";
    if (!list.length) {
      box.appendChild(el("p", "muted", "No learned aliases yet. They appear when customers mark a suggestion helpful, or when an idea candidate is promoted or merged."));
      return;
    }
    var rows = list.map(function (a) {
      var remove = el("button", "btn btn-quiet btn-small btn-danger", "Delete");
      remove.type = "button";
      remove.setAttribute("data-delete-alias", a.id);
      remove.setAttribute("aria-label", "Delete alias " + first(a.query, a.text, a.alias, ""));
      remove.addEventListener("click", function () {
        remove.disabled = true;
        api("DELETE", "/api/aliases/" + encodeURIComponent(a.id))
          .then(function () { say("Alias deleted.", "", true); return loadAliases(); })
          .catch(function (error) { remove.disabled = false; handle(error, "Could not delete the alias"); });
      });
      var type = first(a.item_type, a.type, "article");
      var item = type === "article" ? articleLink(a.item_id) : el("span", "", ideaTitle(a.item_id));
      var state = a.active === false ? "waiting for confirmations"
        : a.source === "review" ? "in use (from a review decision)"
        : a.source === "import" ? "in use (imported)" : "in use";
      // A review decision or an import is the confirmation: no count of helpful answers to show.
      var confirmed = a.source === "review" || a.source === "import" ? "—" : num(first(a.confirmations, a.count, null));
      return [first(a.query, a.text, a.alias, ""), item, confirmed, state, remove];
    });
    box.appendChild(table([{ label: "Question" }, { label: "Answered by" }, { label: "Confirmed", num: true },
      { label: "Status" }, { label: "Actions", hidden: true }], rows));
  }

  // --- loading ---------------------------------------------------------------------------
  function handle(error, what) {
    if (error && error.status === 401) {
      signOut("Your admin token was not accepted. Please sign in again.");
      return;
    }
    say(what + ": " + (error && error.message ? error.message : "network error") + ".", "error");
  }

  function loadMetrics() {
    return api("GET", "/api/metrics" + periodQuery()).then(showMetrics, function (error) {
      if (error.status === 401) throw error;
      unavailable($("[data-top-articles]"), "Metrics are", error);
      say(error.status === 404 ? "This server does not report metrics yet (GET /api/metrics)." : "Could not load metrics: " + error.message, "error");
    });
  }
  function loadCandidates() {
    return api("GET", "/api/clusters").then(function (data) {
      showCandidates(Array.isArray(data) ? data : (data && (data.clusters || data.candidates)) || []);
    }, function (error) {
      if (error.status === 401) throw error;
      unavailable($("[data-candidates]"), "Idea candidates are", error);
    });
  }
  function loadAliases() {
    return api("GET", "/api/aliases").then(function (data) {
      showAliases(Array.isArray(data) ? data : (data && data.aliases) || []);
    }, function (error) {
      if (error.status === 401) throw error;
      unavailable($("[data-aliases]"), "Learned aliases are", error);
    });
  }
  function loadIdeas() {
    return fetch("/api/ideas").then(function (r) { return r.ok ? r.json() : { ideas: [] }; })
      .then(function (data) { ideas = data.ideas || []; }, function () { ideas = []; });
  }
  function loadTitles() {
    return fetch("/api/articles").then(function (r) { return r.ok ? r.json() : { articles: [] }; })
      .then(function (data) {
        (data.articles || []).forEach(function (a) { titles[a.id] = a.title; });
        titlesLoaded = !!data.articles;
      }, function () { /* titles fall back to ids */ });
  }

  function loadAll() {
    say("");
    dashboard.setAttribute("aria-busy", "true");
    return Promise.all([loadTitles(), loadIdeas()])
      .then(function () { return Promise.all([loadMetrics(), loadCandidates(), loadAliases()]); })
      .then(function () { dashboard.setAttribute("data-loaded", "true"); })
      .catch(function (error) { handle(error, "Could not load the dashboard"); })
      .finally(function () { dashboard.removeAttribute("aria-busy"); });
  }

  function showDashboard() {
    loginCard.hidden = true;
    dashboard.hidden = false;
    var heading = dashboard.querySelector("h1, h2");
    if (heading) {  // the sign-in form just disappeared: focus the top of what replaced it
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
    return loadAll();
  }

  function signOut(reason) {
    setToken("");
    dashboard.hidden = true;
    dashboard.removeAttribute("data-loaded");
    loginCard.hidden = false;
    loginError.textContent = reason || "";
    tokenField.value = "";
    tokenField.focus();
  }

  loginForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var value = tokenField.value.trim();
    if (!value) return;
    loginError.textContent = "";
    setToken(value);
    // Check the token against an admin endpoint before showing anything.
    api("GET", "/api/aliases").catch(function (error) {
      if (error.status === 404) return null; // this server has no aliases endpoint: try metrics
      throw error;
    }).then(function () {
      return showDashboard();
    }).catch(function (error) {
      setToken("");
      loginError.textContent = error && error.status === 401
        ? "That token is not right. Check DEFLECT_ADMIN_TOKEN on the server."
        : "Could not reach the server: " + (error && error.message ? error.message : "network error") + ".";
    });
  });
  $("[data-sign-out]").addEventListener("click", function () { signOut(""); });
  $("[data-refresh]").addEventListener("click", loadAll);
  period.addEventListener("change", loadMetrics);
  $("[data-rebuild-clusters]").addEventListener("click", function (e) {
    var button = e.currentTarget;
    button.disabled = true;
    say("Rebuilding idea candidates…");
    api("POST", "/api/clusters/rebuild", {})
      .then(function () { say("Idea candidates rebuilt."); return Promise.all([loadCandidates(), loadMetrics()]); })
      .catch(function (error) { handle(error, "Could not rebuild candidates"); })
      .finally(function () { button.disabled = false; button.focus(); });
  });

  if (token()) showDashboard();
  else tokenField.focus();
})();
