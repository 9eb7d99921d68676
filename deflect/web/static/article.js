/* Article page: when opened from a suggestion (?search=<search_id>), ask whether it answered the question. */
(function () {
  "use strict";
  var box = document.querySelector("[data-article-feedback]");
  var searchId = new URLSearchParams(location.search).get("search") || "";
  if (!box || !/^[0-9a-f]{1,64}$/.test(searchId)) return;  // the shape of /api/suggest's search_id
  var articleId = box.getAttribute("data-article-id");
  var thanks = box.querySelector(".feedback-thanks");
  var buttons = box.querySelectorAll("[data-feedback]");
  box.hidden = false;

  // While the database is away for a moment deflect answers 503 (Retry-After); a network error may
  // be as short: 3 tries within ~2 s before saying the answer could not be saved.
  var RETRY_DELAYS_MS = [500, 1200];
  function postEvent(body, tried) {
    tried = tried || 0;
    function again(failed) {
      if (tried >= RETRY_DELAYS_MS.length) return failed();
      return new Promise(function (resolve) { setTimeout(resolve, RETRY_DELAYS_MS[tried]); })
        .then(function () { return postEvent(body, tried + 1); });
    }
    return fetch("/api/events", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.status === 503 ? again(function () { return response; }) : response;
    }, function (error) {
      return again(function () { throw error; });
    });
  }

  Array.prototype.forEach.call(buttons, function (button) {
    button.addEventListener("click", function () {
      var type = button.getAttribute("data-feedback");
      // Disabled buttons lose focus to the page body: keep a keyboard user where the answer is said.
      thanks.setAttribute("tabindex", "-1");
      thanks.focus();
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
      postEvent({ search_id: searchId, type: type, item_id: articleId, item_type: "article" }).then(function (response) {
        if (response.status === 404 || response.status === 409) {
          // No such search here (a link from another deployment, or edited by hand), or it did not
          // show this article: no retry can save the answer, so say so and leave the buttons off.
          box.setAttribute("data-feedback-sent", "unrecorded");
          thanks.textContent = "Thanks. This link is not from a search of this help center, so your answer " +
            "could not be recorded. If you still need help, contact support below.";
          return;
        }
        if (!response.ok) throw new Error("events answered " + response.status);
        box.setAttribute("data-feedback-sent", type);
        thanks.textContent = type === "helpful"
          ? "Great, glad it helped. Thanks for letting us know!"
          : "Thanks. If you still need help, contact support below.";
      }).catch(function () {
        Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
        thanks.textContent = "Your answer could not be saved. Please try again.";
      });
    });
  });
})();
