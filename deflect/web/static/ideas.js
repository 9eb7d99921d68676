/* Idea board: vote buttons (POST /api/ideas/<id>/vote), one vote per idea per browser. */
(function () {
  "use strict";
  var STORE = "deflect-voted";
  var EMAIL = "deflect-voter-email";
  var message = document.querySelector("[data-vote-message]");
  var emailField = document.querySelector("[data-voter-email]");

  function voted() {
    try { return JSON.parse(localStorage.getItem(STORE) || "[]"); } catch (e) { return []; }
  }
  function remember(id) {
    var list = voted();
    if (list.indexOf(id) < 0) list.push(id);
    try { localStorage.setItem(STORE, JSON.stringify(list)); } catch (e) { /* private mode: fine */ }
  }
  function markVoted(button) {
    button.textContent = "Voted";
    var label = button.getAttribute("aria-label") || "";
    if (label.indexOf("Vote for ") === 0) button.setAttribute("aria-label", "Voted for " + label.slice(9));
    button.setAttribute("aria-pressed", "true");
    button.disabled = true;
  }

  if (emailField) {
    // The email is kept for this tab only (a shared computer's next user does not find it);
    // the browser's own autofill offers it again. Older versions kept it for good: removed.
    try {
      localStorage.removeItem(EMAIL);
      emailField.value = sessionStorage.getItem(EMAIL) || "";
    } catch (e) { /* ignore */ }
    emailField.addEventListener("change", function () {
      try { sessionStorage.setItem(EMAIL, emailField.value.trim()); } catch (e) { /* ignore */ }
    });
    emailField.form.addEventListener("submit", function (e) { e.preventDefault(); });
  }

  // While the database is away for a moment deflect answers 503 (Retry-After): 3 tries within ~2 s.
  // Only on 503, where the database did not take the vote: a vote lost on the network may well have
  // been counted (a retry could count it twice), and the person can still press the button again.
  var RETRY_DELAYS_MS = [500, 1200];
  function postVote(id, body, tried) {
    return fetch("/api/ideas/" + encodeURIComponent(id) + "/vote", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (response) {
      if (response.status !== 503 || tried >= RETRY_DELAYS_MS.length) return response;
      return new Promise(function (resolve) { setTimeout(resolve, RETRY_DELAYS_MS[tried]); })
        .then(function () { return postVote(id, body, tried + 1); });
    });
  }

  var already = voted();
  Array.prototype.forEach.call(document.querySelectorAll("[data-vote-idea]"), function (button) {
    var id = button.getAttribute("data-vote-idea");
    button.setAttribute("aria-pressed", "false");
    if (already.indexOf(id) >= 0) markVoted(button);
    button.addEventListener("click", function () {
      var card = button.closest("[data-idea-id]");
      var count = card.querySelector("[data-vote-count]");
      var title = card.querySelector(".idea-title").textContent;
      var body = {};
      var email = emailField ? emailField.value.trim() : "";
      if (email && !/^[^@\s]{1,200}@[^@\s]{1,200}\.[^@\s]{1,60}$/.test(email)) {
        // Voting without it would mean this person never hears back: ask first.
        message.textContent = "“" + email + "” doesn't look like an email address we can write to. " +
          "Correct it, or empty the field to vote without updates.";
        emailField.focus();
        return;
      }
      if (email) body.requester = { email: email };
      // A disabled button loses focus to the page body: keep a keyboard user where the answer is said.
      message.setAttribute("tabindex", "-1");
      message.focus();
      button.disabled = true;
      postVote(id, body, 0).then(function (response) {
        if (!response.ok) throw new Error("vote answered " + response.status);
        return response.json();
      }).then(function (answer) {
        var idea = answer && (answer.idea || answer);
        var votes = idea && typeof idea.votes === "number" ? idea.votes : parseInt(count.textContent, 10) + 1;
        count.textContent = String(votes);
        var unit = count.parentNode.querySelector("[data-vote-label]");
        if (unit) unit.textContent = votes === 1 ? "vote" : "votes";
        remember(id);
        markVoted(button);
        message.textContent = "Thanks! Your vote for “" + title + "” is counted.";
      }).catch(function () {
        button.disabled = false;
        message.textContent = "Your vote could not be saved. Please try again.";
      });
    });
  });
})();
