/*! deflect widget: as-you-type answers for a help form. No build step, no dependencies.
 *
 *   <script src="https://deflect.example.com/static/deflect-widget.js"
 *           data-endpoint="https://deflect.example.com"   (default: where this script came from)
 *           data-types="article,idea" data-k="5" data-locale="en" data-max-chars="1000"
 *           data-input="[data-deflect-input]"              (question field selector, the default)
 *           data-customer-id="..." data-email="..." data-mrr="..."   (optional, known requester)
 *           data-css="none"                                (skip the default stylesheet)
 *           data-messages='{"yes": "..."}'                   (replace any message; English and Korean built in)
 *           defer></script>
 *
 * The question field becomes an ARIA combobox. Searches of one question share a `session`;
 * typing is debounced and a newer request aborts the older one. Typing on after opening a
 * suggestion, answering Yes/No or voting starts a new session: the search acted on stays a
 * final search (one extended in its own session would be superseded, and its click and answer
 * would count in no metric). Opening a suggestion records a
 * `click`, the answer buttons record `helpful` / `not_helpful`, voting for an idea records a
 * `vote` (which counts on the idea board), and sending the form anyway records `ticket_created`
 * for the last search (and for each earlier search of the question the visitor acted on).
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) {
    // A module (<script type="module">) or a bundled copy has no currentScript, so no settings.
    if (window.console) console.warn("deflect: load deflect-widget.js with a classic <script src=...> tag (not type=\"module\", not bundled): it reads its settings from its own tag");
    return;
  }
  if (!window.fetch) return;
  var data = script.dataset;
  var scriptUrl = new URL(script.src, location.href);
  var config = {
    endpoint: (data.endpoint || scriptUrl.origin).replace(/\/+$/, ""),
    types: (data.types || "article,idea").split(",").map(function (t) { return t.trim(); })
      .filter(function (t) { return t === "article" || t === "idea"; }),
    locale: data.locale || null,
    k: Math.min(20, Math.max(1, parseInt(data.k || "5", 10) || 5)),
    input: data.input || "[data-deflect-input]",
    minChars: 3,
    // The server refuses longer queries (max_query_chars, 1000 by default): a pasted essay is
    // searched by its beginning rather than not at all (a ticket then still has a search).
    maxChars: Math.max(1, parseInt(data.maxChars || "1000", 10) || 1000),
    debounceMs: 200,
    // A Korean IME keeps the last syllable composing until the next key: after this long without
    // one, the field's text (composing syllable included) is searched as if the syllable were done.
    composeIdleMs: 800,
    sessionIdleMs: 10 * 60 * 1000,
    submitWaitMs: 2000,
    // A 429 from /api/suggest: wait its Retry-After (default 2 s), at most this long.
    maxBackoffMs: 30 * 1000,
    slowMs: 800,
    theme: /^(light|dark|auto)$/.test(data.theme || "") ? data.theme : "light",
  };
  if (!config.types.length) config.types = ["article", "idea"];

  // One page may load this script more than once (a single-page app that re-inserts the tag on
  // every route change): what the copies share lives on window.deflect, the page's API
  // (deflect.mount(field), deflect.unmount(field), deflect.scan()).
  var shared = window.deflect && window.deflect.isDeflect === true ? window.deflect : null;
  var loadKey = config.endpoint + " " + config.input;
  if (shared && shared.loads[loadKey]) {
    // The same widget again: the first copy already watches the page (new fields included).
    // Its own settings are not used: say so when they differ from the first tag's.
    var firstData = shared.tags && shared.tags[loadKey];
    if (firstData && window.console) {
      var differing = Object.keys(firstData).concat(Object.keys(data)).filter(function (key, i, all) {
        return all.indexOf(key) === i && firstData[key] !== data[key];
      }).map(function (key) { return "data-" + key.replace(/[A-Z]/g, function (c) { return "-" + c.toLowerCase(); }); });
      if (differing.length) {
        console.warn("deflect: a second deflect-widget.js tag for the same data-endpoint and data-input differs from the first in " +
          differing.join(", ") + ": its settings are ignored, the first tag's apply (change them on the first tag, " +
          "e.g. data-email after sign-in, or load the script once)");
      }
    }
    shared.loads[loadKey]();
    return;
  }
  if (!shared) {
    shared = { isDeflect: true, loads: {}, widgets: [], lastId: 0 };
    shared.unmount = function (input) {
      var found = shared.widgets.filter(function (w) { return w.input === input; });
      found.forEach(function (w) { w.destroy(); });
      return found.length > 0;
    };
    window.deflect = shared;
  }
  // The first tag's settings (live: a page may change data-email later), the fields with a widget
  // and the widgets' own elements (not the attribute, which cloneNode copies), whichever copy of the script asks.
  shared.tags = shared.tags || {};
  shared.tags[loadKey] = data;
  shared.fields = shared.fields || new WeakSet();
  shared.roots = shared.roots || new WeakSet();

  // What the widget says, by language (data-locale's, else the page's <html lang>); any message
  // can be replaced with data-messages='{"yes": "..."}' (also how to add a language).
  var MESSAGES = {
    en: {
      suggestions: "Suggested answers", searching: "Searching\u2026",
      unavailable: "Suggestions are not available right now. You can still send your question.",
      articles: "Help articles", ideas: "Ideas from other customers", bestMatch: "Best match",
      mightAnswer: "This might answer your question:", askedToo: "Others asked for this too:",
      related: "Related answers:", none: "No suggestions yet. Add a few words, or send your question to support.",
      oneArticle: "1 article", nArticles: "{n} articles", oneIdea: "1 idea", nIdeas: "{n} ideas", and: " and ",
      found: "{items} found.", keys: "Use the up and down arrows to review, Enter to open.",
      seeIdea: "See the idea", readArticle: "Read the full article", newTab: "(opens in a new tab)", vote: "Vote for this idea", voted: "Voted",
      voteCounted: "Thanks, your vote is counted.", voteFailed: "Your vote could not be saved. Please try again.",
      didItAnswer: "Did this answer your question?", yes: "Yes, this answered my question", no: "No",
      answerFailed: "Your answer could not be saved. Please try again.",
      gladItHelped: "Great, glad that helped! There is no need to send the form.",
      thanksTryAnother: "Thanks for telling us. Try another suggestion, or send your question below.",
      saving: "Saving\u2026",
    },
    ko: {
      suggestions: "추천 답변", searching: "검색 중\u2026",
      unavailable: "지금은 추천 답변을 불러올 수 없습니다. 질문은 그대로 보내실 수 있습니다.",
      articles: "도움말 문서", ideas: "다른 고객의 아이디어", bestMatch: "가장 알맞은 답변",
      mightAnswer: "이 답변이 도움이 될 수 있습니다:", askedToo: "다른 고객도 요청했습니다:",
      related: "관련 답변:", none: "아직 추천 답변이 없습니다. 몇 단어를 더 입력하시거나 지원팀에 질문을 보내 주세요.",
      oneArticle: "문서 1개", nArticles: "문서 {n}개", oneIdea: "아이디어 1개", nIdeas: "아이디어 {n}개", and: ", ",
      found: "{items}를 찾았습니다.", keys: "위아래 화살표로 살펴보고 Enter로 여세요.",
      seeIdea: "아이디어 보기", readArticle: "문서 전체 보기", newTab: "(새 탭에서 열림)", vote: "이 아이디어에 투표", voted: "투표함",
      voteCounted: "감사합니다. 투표가 반영되었습니다.", voteFailed: "투표를 저장하지 못했습니다. 다시 시도해 주세요.",
      didItAnswer: "질문에 대한 답이 되었나요?", yes: "네, 답이 되었습니다", no: "아니요",
      answerFailed: "응답을 저장하지 못했습니다. 다시 시도해 주세요.",
      gladItHelped: "도움이 되어 다행입니다! 양식을 보내지 않으셔도 됩니다.",
      thanksTryAnother: "알려 주셔서 감사합니다. 다른 추천 답변을 보시거나 아래에서 질문을 보내 주세요.",
      saving: "저장 중\u2026",
    },
  };
  var language = (config.locale || document.documentElement.lang || "en").toLowerCase().split(/[-_]/)[0];
  var overrides = {};
  try { overrides = JSON.parse(data.messages || "{}") || {}; } catch (e) { overrides = {}; }

  function t(key) {
    if (typeof overrides[key] === "string") return overrides[key];
    return (MESSAGES[language] || MESSAGES.en)[key] || MESSAGES.en[key];
  }

  var cssUrl = new URL("deflect-widget.css", scriptUrl).href;
  var hasCss = Array.prototype.some.call(document.querySelectorAll("link[rel~=stylesheet]"), function (l) {
    return l.href === cssUrl;
  });
  if (data.css !== "none" && !hasCss) {
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = cssUrl;
    link.setAttribute("data-deflect-css", "");
    if (script.crossOrigin != null) link.crossOrigin = script.crossOrigin;
    link.addEventListener("error", function () {
      // Without it the screen-reader-only texts show on the page; say why, not only the CSP's generic message.
      console.warn("deflect: " + cssUrl + " did not load. If the page has a Content-Security-Policy, allow " +
        scriptUrl.origin + " in style-src (or use data-css=\"none\" and serve deflect-widget.css yourself).");
    });
    document.head.appendChild(link);
  }

  /** An element id not yet on the page ("deflect-1", "deflect-2", ...), whichever copy of the script asks. */
  function nextId() {
    var id;
    do { id = "deflect-" + (++shared.lastId); } while (document.getElementById(id));
    return id;
  }
  var RTL = /^(ar|he|fa|ur|yi|ps|ckb|dv|sd|ug)$/;
  var EMAIL = /^[^@\s]{1,200}@[^@\s]{1,200}\.[^@\s]{1,60}$/;
  // Scripts written without spaces between words (the ranges of deflect/lexical.py).
  var UNSPACED = /[\uAC00-\uD7AF\u1100-\u11FF\u3040-\u30FF\u3400-\u9FFF\u0E00-\u0E7F]/;
  // Ideas this browser voted for; the same key as the ideas board (ideas.js), so on deflect's
  // own pages a vote counts once wherever it was given.
  var VOTED = "deflect-voted";

  function votedIdeas() {
    try { return JSON.parse(localStorage.getItem(VOTED) || "[]"); } catch (e) { return []; }
  }

  function rememberVote(id) {
    var list = votedIdeas();
    if (list.indexOf(id) < 0) list.push(id);
    try { localStorage.setItem(VOTED, JSON.stringify(list)); } catch (e) { /* private mode: fine */ }
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  /** Only http(s) links, relative ones resolved against deflect (not the host page). */
  function safeUrl(url) {
    try {
      var parsed = new URL(url, config.endpoint + "/");
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function isDeflectUrl(url) {
    return new URL(url).origin === new URL(config.endpoint + "/", location.href).origin;
  }

  // A request with no answer at all (a dead cell connection, a stuck proxy: it neither answers
  // nor fails) is given up after this long: a search then shows that suggestions are unavailable
  // (the form still sends), an event counts as not stored.
  var REQUEST_TIMEOUT_MS = 8000;

  /** POST JSON to deflect; aborted after REQUEST_TIMEOUT_MS (the body's reading included), or
   * when options.signal is. */
  function post(path, body, options) {
    options = options || {};
    var controller = new AbortController();
    var given = options.signal;
    if (given) {
      if (given.aborted) controller.abort();
      else given.addEventListener("abort", function () { controller.abort(); });
    }
    setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS); // a no-op once read
    return fetch(config.endpoint + path, Object.assign({
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      mode: "cors",
    }, options, { signal: controller.signal }));
  }

  /** Retry-After (seconds or an HTTP date) in ms; null when absent or unreadable. */
  function retryAfterHeaderMs(response) {
    var value = (response.headers.get("Retry-After") || "").trim();
    var ms = /^\d+$/.test(value) ? parseInt(value, 10) * 1000 : Date.parse(value) - Date.now();
    return ms >= 0 ? ms : null;
  }

  // An event is stored only once the database has it: while the database is away for a moment
  // deflect answers 503, and a network error may be just as short. Try again twice, soon
  // (3 tries within ~2 s), then give up; the form's submit waits at most submitWaitMs anyway.
  var RETRY_DELAYS_MS = [500, 1200];
  // A 429 (the session's or the address's rate limit: searches count in the same bucket) stored
  // nothing either: try again after its Retry-After, within the same two retries, each waiting
  // at most this long (a click or an answer is worth a short wait, not a minute's).
  var MAX_EVENT_RETRY_AFTER_MS = 10 * 1000;

  /** Retry on 503 and 429 (nothing was stored); on a network error only when `body` may be sent
   * twice: the server stores the same event once, but counts each anonymous vote. A request that
   * timed out (an AbortError) is not sent again: it may have arrived. */
  function postWithRetry(path, body, options) {
    var repeatable = body.type !== "vote";
    function attempt(tried) {
      function again(delay, failed) {
        if (tried >= RETRY_DELAYS_MS.length) return failed();
        return new Promise(function (resolve) { setTimeout(resolve, delay); })
          .then(function () { return attempt(tried + 1); });
      }
      return post(path, body, options).then(function (response) {
        function failed() { return response; }
        if (response.status === 503) return again(RETRY_DELAYS_MS[tried], failed);
        if (response.status === 429) {
          var wait = retryAfterHeaderMs(response);
          return again(Math.min(MAX_EVENT_RETRY_AFTER_MS, Math.max(RETRY_DELAYS_MS[0], wait == null ? 2000 : wait)), failed);
        }
        return response;
      }, function (error) {
        if ((error && error.name === "AbortError") || !repeatable) throw error;
        return again(RETRY_DELAYS_MS[tried], function () { throw error; });
      });
    }
    return attempt(0);
  }

  function requester(form) {
    var who = {};
    if (data.customerId) who.customer_id = data.customerId;
    var email = data.email || "";
    var field = form && form.querySelector("[data-deflect-email]");
    if (field && EMAIL.test(field.value.trim())) email = field.value.trim();
    if (email && EMAIL.test(email)) who.email = email;
    if (data.mrr && !isNaN(parseFloat(data.mrr))) who.mrr = parseFloat(data.mrr);
    return Object.keys(who).length ? who : null;
  }

  /** Laid out side by side: a flex row, or a grid of more than one column. */
  function isRow(node) {
    var style = getComputedStyle(node);
    if (/flex$/.test(style.display)) return style.flexDirection.indexOf("row") === 0;
    if (/grid$/.test(style.display)) return style.gridTemplateColumns.trim().split(/\s+(?![^(]*\))/).length > 1;
    return false;
  }

  /** What the widget follows: the field, or the row it sits in ("search [Ask]" in a flex header),
   * so the panel goes under the row instead of becoming a narrow column of it (stretching the field). */
  function widgetPlace(input) {
    var place = input;
    while (place.parentElement && place.parentElement !== document.body && isRow(place.parentElement)) {
      place = place.parentElement;
    }
    return place;
  }

  var COMBOBOX_ATTRIBUTES = ["role", "aria-autocomplete", "aria-expanded", "aria-controls", "aria-activedescendant", "autocomplete", "data-deflect-input"];

  var STALE_ATTRIBUTES = ["role", "aria-autocomplete", "aria-expanded", "aria-controls", "aria-activedescendant"];

  /** A copy of a field that has a widget (cloneNode: a Turbo Drive snapshot, "duplicate this
   * block") carries its attributes and, next to it, a copy of its widget with the same ids that
   * nothing drives: take them away, so the copy gets a widget of its own. */
  function dropStaleCopy(input) {
    [widgetPlace(input).nextElementSibling, input.nextElementSibling].forEach(function (node) {
      if (node && node.classList.contains("dfl-widget") && !shared.roots.has(node)) node.remove();
    });
    STALE_ATTRIBUTES.forEach(function (name) { input.removeAttribute(name); });
    input.removeAttribute("data-deflect-attached");
  }

  function attach(input) {
    if (!input || input.nodeType !== 1 || !input.parentNode || shared.fields.has(input)) return false;
    if (input.closest("form[data-deflect-snapshot]")) return false; // the widget's own copy of a form being sent
    if (input.hasAttribute("data-deflect-attached")) dropStaleCopy(input);
    shared.fields.add(input);
    input.setAttribute("data-deflect-attached", "1");
    // What unmount puts back.
    var before = COMBOBOX_ATTRIBUTES.map(function (name) { return [name, input.getAttribute(name)]; });
    if (!input.hasAttribute("data-deflect-input")) input.setAttribute("data-deflect-input", "");
    var uid = nextId();
    var removers = [];

    /** addEventListener, undone when the widget is unmounted. */
    function on(target, type, listener, options) {
      target.addEventListener(type, listener, options);
      removers.push(function () { target.removeEventListener(type, listener, options); });
    }

    var state = {
      session: null,
      lastTyped: 0,
      timer: null,
      controller: null,
      seq: 0,
      lastQuery: "",
      search: null, // {id, answered, results}
      actedOn: [], // the searches of this question whose suggestions the user opened, answered or voted on
      sessionActed: false, // one of them is in the current session
      options: [], // [{node, result}]
      active: -1,
      open: false,
      clicked: {},
      feedback: {},
      pending: null, // {query, promise}: the search on its way
      holding: false, // a submit held back until its ticket_created is stored
      backoffUntil: 0, // a 429 from /api/suggest: no search before this time (Date.now())
    };

    // --- DOM -----------------------------------------------------------------------------
    var root = el("div", "dfl-widget");
    shared.roots.add(root);
    root.id = uid;
    root.setAttribute("data-theme", config.theme);
    // The language it speaks (and the results of a locale-filtered search are in), so a screen
    // reader reads a Korean widget on an English page with a Korean voice (WCAG 3.1.2).
    // A language of its own only where every message is given in it (one replaced message is not).
    root.lang = MESSAGES[language] || Object.keys(MESSAGES.en).every(function (key) {
      return typeof overrides[key] === "string";
    }) ? language : "en";
    // Its own writing direction, not the page's: English on an Arabic page reads left to right
    // (punctuation, the accent bar). Titles and snippets take theirs from their own text.
    root.dir = RTL.test(root.lang) ? "rtl" : "ltr";
    var status = el("div", "dfl-sr-status");
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    var panel = el("div", "dfl-panel");
    panel.hidden = true;
    var heading = el("div", "dfl-panel-head");
    var listbox = el("div", "dfl-listbox");
    listbox.id = uid + "-listbox";
    listbox.setAttribute("role", "listbox");
    listbox.setAttribute("aria-label", t("suggestions"));
    var preview = el("section", "dfl-preview");
    preview.hidden = true;
    preview.setAttribute("aria-live", "polite");
    panel.appendChild(heading);
    panel.appendChild(listbox);
    panel.appendChild(preview);
    // Seen by everyone (the status region above is for screen readers): "searching..." on a
    // slow answer, and a short note when suggestions are unavailable.
    var note = el("div", "dfl-note");
    note.hidden = true;
    note.setAttribute("aria-hidden", "true");
    root.appendChild(status);
    root.appendChild(note);
    root.appendChild(panel);
    widgetPlace(input).insertAdjacentElement("afterend", root);

    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", listbox.id);
    input.setAttribute("autocomplete", "off");

    function announce(text) {
      status.textContent = text;
    }

    function showNote(text) {
      note.textContent = text || "";
      note.hidden = !text;
    }

    function setOpen(open) {
      state.open = open && state.options.length > 0;
      panel.hidden = !state.open && preview.hidden;
      listbox.hidden = !state.open;
      input.setAttribute("aria-expanded", state.open ? "true" : "false");
      if (!state.open) setActive(-1);
    }

    function setActive(index) {
      state.options.forEach(function (o, i) {
        o.node.setAttribute("aria-selected", i === index ? "true" : "false");
        o.node.classList.toggle("dfl-active", i === index);
      });
      state.active = index;
      if (index >= 0) {
        input.setAttribute("aria-activedescendant", state.options[index].node.id);
        var node = state.options[index].node;
        if (node.scrollIntoView) node.scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    // --- searching -----------------------------------------------------------------------
    function newQuestion() {
      state.session = null;
      state.search = null;
      state.actedOn = [];
      state.sessionActed = false;
      state.lastQuery = "";
      state.clicked = {};
      state.feedback = {};
    }

    function cancelPending() {
      showNote("");
      clearTimeout(state.timer);
      if (state.controller) state.controller.abort();
      state.controller = null;
      state.pending = null;
    }

    /** The question as sent: trimmed, at most maxChars characters (code points, as the server counts). */
    function currentQuery() {
      var query = input.value.trim();
      var chars = Array.from(query);
      return chars.length > config.maxChars ? chars.slice(0, config.maxChars).join("").trim() : query;
    }

    function onInput(e) {
      // While an input method composes (Korean, Japanese, Chinese...), the field holds syllables
      // that are not yet text: search once the composition ends, or once the typing pauses with a
      // syllable still composing ("환불" then nothing: the IME holds "불" until the next key).
      if (e && e.isComposing) {
        cancelPending();
        state.timer = setTimeout(function () { onInput(null); }, config.composeIdleMs);
        return;
      }
      var query = currentQuery();
      var now = Date.now();
      if (state.session && now - state.lastTyped > config.sessionIdleMs) newQuestion();
      state.lastTyped = now;
      cancelPending();
      if (!query) {
        newQuestion();
        clearResults();
        return;
      }
      if (!longEnough(query)) {
        // Deleted back to a stub: the suggestions shown were for a longer question.
        if (state.lastQuery) { state.lastQuery = ""; clearResults(); }
        return;
      }
      // After a 429, not before its wait is over (the timer is what ends it: a clock may say 1 ms early).
      state.timer = setTimeout(function () { state.backoffUntil = 0; search(query); },
        Math.max(config.debounceMs, state.backoffUntil - now));
    }

    function backingOff() {
      return Date.now() < state.backoffUntil;
    }

    /** How long a 429 asks to wait (Retry-After: seconds or an HTTP date), within reason. */
    function retryAfterMs(response) {
      var ms = retryAfterHeaderMs(response);
      return Math.min(config.maxBackoffMs, Math.max(500, ms == null ? 2000 : ms));
    }

    /** minChars characters, or 2 in scripts written without spaces, where two characters are a
     * word ("환불" is "refund"). */
    function longEnough(query) {
      return query.length >= config.minChars || (query.length >= 2 && UNSPACED.test(query));
    }

    /** Search for query; resolves once its results are shown (or it failed or was replaced). */
    function search(query) {
      if (query === state.lastQuery || backingOff()) return Promise.resolve();
      if (state.sessionActed) {
        // A refined question after acting on a search's suggestions: keep that search final.
        state.session = null;
        state.sessionActed = false;
        state.clicked = {};
        state.feedback = {};
      }
      if (!state.session) state.session = randomId();
      if (state.controller) state.controller.abort();
      var controller = new AbortController();
      state.controller = controller;
      var seq = ++state.seq;
      var body = { query: query, k: config.k, types: config.types, session: state.session };
      if (config.locale) body.locale = config.locale;
      root.setAttribute("aria-busy", "true");
      var slow = setTimeout(function () { if (seq === state.seq) showNote(t("searching")); }, config.slowMs);
      var promise = post("/api/suggest", body, { signal: controller.signal })
        .then(function (response) {
          if (response.status === 429) {
            var wait = retryAfterMs(response);
            var error = new Error("suggest answered 429");
            error.retryAfterMs = wait;
            throw error;
          }
          if (!response.ok) throw new Error("suggest answered " + response.status);
          return response.json();
        })
        .then(function (answer) {
          if (seq !== state.seq) return; // a newer search is on its way
          state.lastQuery = query;
          showNote("");
          render(answer);
        })
        .catch(function (error) {
          // Aborted by a newer search (or the widget's end): nothing to say. Aborted by the timeout
          // in post(): no answer is a failed search, said as one.
          if (error && error.name === "AbortError" && controller.signal.aborted) return;
          if (error && error.retryAfterMs && seq === state.seq) {
            // Too many searches for now: nothing is wrong that the visitor should hear about.
            // The suggestions shown stay; the field's question is searched once the wait is over.
            showNote("");
            state.backoffUntil = Date.now() + error.retryAfterMs;
            clearTimeout(state.timer);
            state.timer = setTimeout(function () {
              state.backoffUntil = 0;
              var current = currentQuery();
              if (longEnough(current)) search(current);
            }, error.retryAfterMs);
            return;
          }
          if (seq === state.seq) {
            var message = t("unavailable");
            announce(message);
            showNote(message);
            // The suggestions shown were for an older question: not under the field's new one.
            // (state.search stays: a ticket sent now is still recorded on the last search known.)
            clearResults();
          }
        })
        .finally(function () {
          clearTimeout(slow);
          if (seq === state.seq) {
            root.removeAttribute("aria-busy");
            state.controller = null;
            state.pending = null;
          }
        });
      state.pending = { query: query, promise: promise };
      return promise;
    }

    function clearResults() {
      state.options = [];
      listbox.textContent = "";
      heading.textContent = "";
      closePreview();
      setOpen(false);
      panel.hidden = true;
    }

    function render(answer) {
      state.search = { id: answer.search_id, answered: !!answer.answered, results: answer.results || [] };
      state.clicked = {};
      listbox.textContent = "";
      listbox.setAttribute("data-search-id", answer.search_id);
      listbox.setAttribute("data-query", state.lastQuery);
      state.options = [];
      closePreview();
      var groups = [
        { type: "article", label: t("articles") },
        { type: "idea", label: t("ideas") },
      ];
      // The group holding the best result comes first, under the heading that introduces it
      // (an idea at the top is "Others asked for this too", not an answer above five articles).
      var top = state.search.results[0];
      if (top && top.type === "idea") groups.reverse();
      var counts = {};
      groups.forEach(function (group) {
        var items = state.search.results.filter(function (r) { return r.type === group.type; });
        counts[group.type] = items.length;
        if (!items.length) return;
        var box = el("div", "dfl-group dfl-group-" + group.type);
        box.setAttribute("role", "group");
        var label = el("div", "dfl-group-label", group.label);
        label.id = uid + "-group-" + group.type;
        label.setAttribute("role", "presentation");
        box.setAttribute("aria-labelledby", label.id);
        box.appendChild(label);
        items.forEach(function (result) {
          var index = state.options.length;
          var option = el("div", "dfl-option");
          option.id = uid + "-option-" + index;
          option.setAttribute("role", "option");
          option.setAttribute("aria-selected", "false");
          option.setAttribute("data-deflect-suggestion", "");
          option.setAttribute("data-type", result.type);
          option.setAttribute("data-id", result.id);
          var row = el("span", "dfl-title-row");
          var title = el("span", "dfl-title", result.title);
          title.dir = "auto";
          // A Korean article in an English widget (WCAG 3.1.2): its words, not the widget's badge.
          if (result.locale) title.lang = result.locale;
          row.appendChild(title);
          if (result === state.search.results[0] && state.search.answered) {
            row.appendChild(el("span", "dfl-badge", t("bestMatch")));
          }
          option.appendChild(row);
          if (result.snippet) {
            var snippet = el("span", "dfl-snippet", result.snippet);
            snippet.dir = "auto";
            if (result.locale) snippet.lang = result.locale;
            option.appendChild(snippet);
          }
          option.addEventListener("mousedown", function (e) { e.preventDefault(); });
          option.addEventListener("click", function () { setActive(index); openPreview(index, false); });
          box.appendChild(option);
          state.options.push({ node: option, result: result });
        });
        listbox.appendChild(box);
      });
      // For the host page: which search is shown (e.g. to attach its id to a ticket it files itself).
      input.dispatchEvent(new CustomEvent("deflect:results", { bubbles: true, detail: {
        searchId: state.search.id, query: state.lastQuery, answered: state.search.answered,
        results: state.search.results } }));
      if (state.options.length) {
        var first = state.search.results[0];
        // An idea at the top is a request others made, not an answer: say so.
        heading.textContent = !state.search.answered ? t("related") : first.type === "idea" ? t("askedToo") : t("mightAnswer");
        announce(describe(counts) + " " + t("keys"));
        setOpen(true);
      } else {
        heading.textContent = "";
        announce(t("none"));
        setOpen(false);
        panel.hidden = true;
      }
    }

    function describe(counts) {
      var parts = [];
      if (counts.article) parts.push(t(counts.article === 1 ? "oneArticle" : "nArticles").replace("{n}", counts.article));
      if (counts.idea) parts.push(t(counts.idea === 1 ? "oneIdea" : "nIdeas").replace("{n}", counts.idea));
      return t("found").replace("{items}", parts.join(t("and")));
    }

    // --- events --------------------------------------------------------------------------
    function sendEvent(type, result, options) {
      if (!state.search) return Promise.resolve(null);
      if (type !== "ticket_created") {
        if (state.actedOn.indexOf(state.search.id) < 0) state.actedOn.push(state.search.id);
        state.sessionActed = true;
      }
      return postEvent(state.search.id, type, result, options);
    }

    function postEvent(searchId, type, result, options) {
      var body = { search_id: searchId, type: type };
      if (state.session) body.session = state.session; // counted by the per-session rate limit
      if (result) {
        body.item_id = result.id;
        body.item_type = result.type;
      }
      var who = requester(formOf());
      if (who && (type === "ticket_created" || type === "vote" || type === "helpful")) body.requester = who;
      return postWithRetry("/api/events", body, options).catch(function () { return null; });
    }

    function recordClick(result) {
      var key = result.type + ":" + result.id;
      if (state.clicked[key]) return;
      state.clicked[key] = true;
      sendEvent("click", result);
    }

    // --- preview of one suggestion -------------------------------------------------------
    function closePreview() {
      preview.hidden = true;
      preview.textContent = "";
      panel.hidden = !state.open;
    }

    function openPreview(index, moveFocus) {
      var search = state.search;
      if (!search || !state.options[index]) return; // the question was sent as a ticket: nothing to open
      var result = state.options[index].result;
      recordClick(result);
      preview.textContent = "";
      preview.hidden = false;
      panel.hidden = false;
      preview.setAttribute("data-type", result.type);
      // h2: a help form's page has its h1; an h3 right after it skips a level (axe: heading-order).
      var title = el("h2", "dfl-preview-title", result.title);
      title.dir = "auto";
      if (result.locale) title.lang = result.locale;
      title.tabIndex = -1;
      preview.appendChild(title);
      if (result.snippet) {
        var snippet = preview.appendChild(el("p", "dfl-preview-snippet", result.snippet));
        snippet.dir = "auto";
        if (result.locale) snippet.lang = result.locale;
      }
      var href = safeUrl(result.url);
      var actions = el("div", "dfl-actions");
      if (href) {
        var target = href;
        if (result.type === "article" && isDeflectUrl(href)) {
          var withSearch = new URL(href);
          withSearch.searchParams.set("search", search.id);
          target = withSearch.href;
        }
        var open = el("a", "dfl-open", result.type === "idea" ? t("seeIdea") : t("readArticle"));
        open.appendChild(el("span", "dfl-sr-only", " " + t("newTab")));  // said, not shown (WCAG 3.2.5)
        open.href = target;
        open.target = "_blank";
        open.rel = "noopener";
        open.setAttribute("data-deflect-open", "");
        open.addEventListener("click", function () { recordClick(result); });
        actions.appendChild(open);
      }
      preview.appendChild(actions);
      var done = el("p", "dfl-feedback-done");
      done.setAttribute("role", "status");
      if (result.type === "idea") {
        var vote = el("button", "dfl-button dfl-vote", t("vote"));
        vote.type = "button";
        vote.setAttribute("data-deflect-vote", "");
        if (votedIdeas().indexOf(result.id) >= 0) {
          vote.textContent = t("voted");
          vote.disabled = true;
        }
        vote.addEventListener("click", function () {
          keepFocus(vote);
          vote.disabled = true;
          voteFor(result).then(function (ok) {
            done.textContent = ok ? t("voteCounted") : t("voteFailed");
            vote.disabled = ok;
            if (ok) {
              vote.textContent = t("voted");
              rememberVote(result.id);
            }
          });
        });
        actions.appendChild(vote);
      } else {
        var ask = el("p", "dfl-ask", t("didItAnswer"));
        var yes = el("button", "dfl-button dfl-yes", t("yes"));
        yes.type = "button";
        yes.setAttribute("data-deflect-helpful", "");
        var no = el("button", "dfl-button dfl-no", t("no"));
        no.type = "button";
        no.setAttribute("data-deflect-not-helpful", "");
        var key = search.id + ":" + result.id;
        function mark(type) {
          if (state.feedback[key]) return;
          state.feedback[key] = type;
          keepFocus(yes, no);
          yes.disabled = no.disabled = true;
          sendEvent(type, result).then(function (response) {
            var ok = response && response.ok;
            if (!ok) {
              delete state.feedback[key];
              yes.disabled = no.disabled = false;
              done.textContent = t("answerFailed");
              return;
            }
            root.setAttribute("data-feedback", type);
            done.textContent = type === "helpful"
              ? t("gladItHelped")
              : t("thanksTryAnother");
          });
        }
        yes.addEventListener("click", function () { mark("helpful"); });
        no.addEventListener("click", function () { mark("not_helpful"); });
        if (state.feedback[key]) yes.disabled = no.disabled = true;
        var buttons = el("div", "dfl-feedback");
        buttons.appendChild(yes);
        buttons.appendChild(no);
        preview.appendChild(ask);
        preview.appendChild(buttons);
      }
      preview.appendChild(done);
      if (moveFocus) {
        title.focus();
      } else {
        // Opened with a mouse or a tap: the preview sits under the list, maybe below the fold.
        preview.scrollIntoView({ block: "nearest" });
      }

      function keepFocus() {
        // A button about to be disabled drops the focus to the page, and with it Escape and the
        // arrow keys: hand it to the status line that will say what happened.
        if (Array.prototype.indexOf.call(arguments, document.activeElement) >= 0) {
          done.textContent = t("saving");  // an empty status line is not displayed, so not focusable
          done.tabIndex = -1;
          done.focus();
        }
      }
    }

    function voteFor(result) {
      // A vote event on the search counts the vote on the idea as well (and keeps its requester).
      return sendEvent("vote", result).then(function (response) { return !!(response && response.ok); });
    }

    // --- keyboard ------------------------------------------------------------------------
    on(input, "input", onInput);
    on(input, "compositionend", function () { onInput(null); });
    on(input, "keydown", function (e) {
      if (e.isComposing || e.keyCode === 229) return; // keys that confirm or move an input method's text
      var count = state.options.length;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        if (!count) return;
        e.preventDefault();
        if (!state.open) setOpen(true);
        var step = e.key === "ArrowDown" ? 1 : -1;
        var next = state.active < 0 ? (step > 0 ? 0 : count - 1) : (state.active + step + count) % count;
        setActive(next);
      } else if (e.key === "Enter" && state.open && state.active >= 0) {
        e.preventDefault();
        openPreview(state.active, true);
      } else if (e.key === "Enter" && state.open && count) {
        // Enter in a question field with suggestions showing means "show me", not "file my
        // ticket now": the first suggestion is highlighted; Enter again opens it.
        e.preventDefault();
        setActive(0);
      } else if (e.key === "Escape") {
        if (!preview.hidden) {
          e.preventDefault();
          closePreview();
        } else if (state.open) {
          e.preventDefault();
          setOpen(false);
          panel.hidden = true;
        }
      }
    });
    root.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && !preview.hidden) {
        e.preventDefault();
        closePreview();
        input.focus();
      }
    });

    // --- sending the form anyway ---------------------------------------------------------
    /** The question's last keys are not searched yet (and may be: no 429 to wait out). */
    function lastKeysUnsearched() {
      var query = currentQuery();
      return longEnough(query) && query !== state.lastQuery && !backingOff();
    }

    /** Record ticket_created for the whole question; resolves once stored or failed, null when
     * there is nothing to attach it to. The searches acted on are final whatever comes next, so
     * their tickets go at once; the last search's goes once its last keys are searched (the search
     * already on its way for them is waited for, not sent again), at once when they are. Sent with
     * keepalive: a ticket on its way when the page leaves still arrives. */
    function recordTicket() {
      clearTimeout(state.timer);
      showNote("");
      var query = currentQuery();
      var needsSearch = lastKeysUnsearched();
      if (!state.search && !needsSearch && !state.actedOn.length) return null;
      var sentFor = {};
      function ticket(id) {
        if (!id || sentFor[id]) return null;
        sentFor[id] = true;
        return postEvent(id, "ticket_created", null, { keepalive: true });
      }
      var now = state.actedOn.map(ticket);
      var last;
      if (!needsSearch) {
        last = Promise.resolve(ticket(state.search && state.search.id)); // sent now, before the page leaves
      } else {
        var searched;
        if (state.pending && state.pending.query === query) {
          searched = state.pending.promise;
        } else {
          if (state.controller) state.controller.abort();
          searched = search(query);
        }
        last = searched.then(function () { return ticket(state.search && state.search.id); });
      }
      return Promise.all([last].concat(now)).then(function (sent) { return sent[0]; });
    }

    // A widget without a <form> (an in-app chat, a page that files tickets through its own API)
    // says a ticket was filed with input.dispatchEvent(new CustomEvent("deflect:ticket")).
    on(input, "deflect:ticket", function () {
      var sent = recordTicket();
      if (sent) sent.then(function () { newQuestion(); clearResults(); });
    });

    function formOf() {
      return input.form || input.closest("form");
    }

    /** A form's own property, even when one of its fields is named "action" or "elements". */
    function formProp(form, name) {
      return Object.getOwnPropertyDescriptor(HTMLFormElement.prototype, name).get.call(form);
    }

    /** Every field of the form passes its constraints (without firing `invalid` events). */
    function formValid(form) {
      return Array.prototype.every.call(formProp(form, "elements"), function (field) {
        return !field.willValidate || !field.validity || field.validity.valid;
      });
    }

    /** What the browser sends for this submit, read now (a page may disable the button or reset
     * the form right after the submit): the fields with the submitter's name=value, and where and
     * how, the submitter's formaction / formmethod / formenctype / formtarget included. */
    function snapshot(form, submitter) {
      var own = submitter && submitter.form === form ? submitter : null;
      var entries;
      try {
        entries = own ? new FormData(form, own) : new FormData(form);
      } catch (error) { // an old browser without FormData's submitter argument
        entries = new FormData(form);
        if (own && own.name) entries.append(own.name, own.value);
      }
      function how(attribute, property, formProperty) {
        return own && own.hasAttribute(attribute) ? own[property] : formProp(form, formProperty);
      }
      return {
        entries: Array.from(entries.entries()),
        action: how("formaction", "formAction", "action"),
        method: how("formmethod", "formMethod", "method"),
        enctype: how("formenctype", "formEnctype", "enctype"),
        target: how("formtarget", "formTarget", "target"),
        acceptCharset: formProp(form, "acceptCharset"),
      };
    }

    /** Whether submitSnapshot can send this snapshot: a file field needs DataTransfer (older
     * Safari has none), or the files would be lost. */
    function canResend(snap) {
      var files = snap.entries.some(function (pair) { return typeof pair[1] !== "string" && (pair[1].name || pair[1].size); });
      if (!files) return true;
      try {
        return !!new DataTransfer().items;
      } catch (error) {
        return false;
      }
    }

    /** Send a snapshot as the browser would have: a form of hidden copies, sent with form.submit()
     * (which runs no submit handler of the page a second time). */
    function submitSnapshot(snap) {
      var copy = document.createElement("form");
      copy.setAttribute("data-deflect-snapshot", "");
      copy.hidden = true;
      copy.noValidate = true;
      copy.action = snap.action;
      copy.method = snap.method;
      copy.enctype = snap.enctype;
      if (snap.target) copy.target = snap.target;
      if (snap.acceptCharset) copy.acceptCharset = snap.acceptCharset;
      snap.entries.forEach(function (pair) {
        var field = document.createElement("input");
        field.name = pair[0];
        if (typeof pair[1] === "string") {
          field.type = "hidden";
          field.value = pair[1];
        } else {
          field.type = "file";
          if (pair[1].name || pair[1].size) { // an empty file field sends what an empty copy does
            var files = new DataTransfer();
            files.items.add(pair[1]);
            field.files = files.files;
          }
        }
        copy.appendChild(field);
      });
      document.body.appendChild(copy);
      try {
        HTMLFormElement.prototype.submit.call(copy); // reads the copy now; the page leaves later
      } finally {
        copy.remove();
      }
    }

    /** Once every handler of the page has seen the submit:
     * - the page prevented it (it validates the form itself, files the ticket by fetch, or sends
     *   it later with requestSubmit after a captcha): the ticket is recorded only when the form is
     *   valid, and the question stays, so a submit that follows lands on the same search (the
     *   server stores the same event once);
     * - the browser would send it: the submission is read now, held until the tickets are stored
     *   (the search for the last keys first, if it is still needed; a ticket lost on the network
     *   is tried again meanwhile), at most submitWaitMs, then sent as read. */
    function afterPageHandlers(e, target, canHold) {
      if (state.holding) {
        if (canHold && !e.defaultPrevented) e.preventDefault(); // a second click while held: one submit
        return;
      }
      if (e.defaultPrevented) {
        if (!formValid(target)) return; // not sent: the page shows what to fix
        var kept = recordTicket();
        // Typing on after this starts a new session, the search ticketed stays final.
        if (kept) kept.then(function () { if (state.search) state.sessionActed = true; });
        return;
      }
      var method = e.submitter && e.submitter.form === target && e.submitter.hasAttribute("formmethod")
        ? e.submitter.formMethod : formProp(target, "method");
      if (!canHold || method === "dialog") {
        var sent = recordTicket();
        if (sent) sent.then(function () { newQuestion(); clearResults(); }); // the page may stay
        return;
      }
      var snap = snapshot(target, e.submitter);
      if (!canResend(snap)) { // files this browser cannot put back into a form: it sends the form itself
        recordTicket();
        return;
      }
      var held = recordTicket();
      if (!held) return; // nothing to record: the browser sends the form itself
      e.preventDefault();
      state.holding = true;
      var timeout = new Promise(function (resolve) { setTimeout(resolve, config.submitWaitMs); });
      Promise.race([held, timeout]).then(function () {
        state.holding = false;
        submitSnapshot(snap);
        newQuestion(); // the page may stay (formtarget="_blank"): this question is sent
        clearResults();
      });
    }

    // Seen first (window, capturing), decided last: a listener added now to window for the
    // bubbling phase runs after every submit handler of the page, the form's, its ancestors' and
    // the document's (delegated, jQuery or React style) included, whenever they were added.
    on(window, "submit", function (e) {
      var target = formOf();
      // A submit event a script dispatched sends nothing: neither does the widget.
      if (!target || e.target !== target || !e.isTrusted) return;
      var decided = false;
      function decide(bubbled) {
        window.removeEventListener("submit", onBubble);
        if (decided) return;
        decided = true;
        afterPageHandlers(e, target, bubbled);
      }
      function onBubble(ev) { if (ev === e) decide(true); }
      window.addEventListener("submit", onBubble);
      // A handler that stopped the propagation keeps it from window: decide once it is dispatched
      // (too late to hold the submit, but its ticket is still sent, with keepalive).
      setTimeout(function () { decide(false); }, 0);
    }, true);

    var handle = {
      input: input,
      destroy: function () {
        cancelPending();
        removers.forEach(function (remove) { remove(); });
        removers = [];
        root.remove();
        before.forEach(function (pair) {
          if (pair[1] == null) input.removeAttribute(pair[0]);
          else input.setAttribute(pair[0], pair[1]);
        });
        input.removeAttribute("data-deflect-attached");
        shared.fields.delete(input);
        shared.widgets = shared.widgets.filter(function (w) { return w !== handle; });
      },
    };
    shared.widgets.push(handle);
    return true;
  }

  /** Attach to every field matching data-input in `scope` (the document by default), `scope` included. */
  function scan(scope) {
    scope = scope || document;
    if (scope.nodeType === 1 && scope.matches(config.input)) attach(scope);
    if (scope.querySelectorAll) Array.prototype.forEach.call(scope.querySelectorAll(config.input), attach);
  }

  /** Unmount the widgets whose field left the page (a route change), so nothing keeps them alive. */
  function sweep() {
    shared.widgets.slice().forEach(function (w) { if (!w.input.isConnected) w.destroy(); });
  }

  function init() {
    scan(document);
    // Fields a single-page app renders later are attached as they appear.
    if (window.MutationObserver) {
      new MutationObserver(function (records) {
        var removed = false;
        records.forEach(function (record) {
          Array.prototype.forEach.call(record.addedNodes, function (node) { if (node.nodeType === 1) scan(node); });
          if (record.removedNodes.length) removed = true;
        });
        if (removed) sweep();
      }).observe(document.documentElement, { childList: true, subtree: true });
    }
  }

  shared.loads[loadKey] = function () { scan(document); };
  if (!shared.mount) {
    /** deflect.mount(field): attach the widget to one field (any selector); false if it already has one. */
    shared.mount = function (input) { return attach(input); };
    shared.scan = function (scope) { scan(scope); };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
