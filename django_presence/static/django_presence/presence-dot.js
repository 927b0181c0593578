/*
 * Presence dots for any page of the host site, with no dependency (docs/directory.md).
 *
 *   <span data-user-id="10"></span>
 *   <script src="{% static 'django_presence/presence-dot.js' %}"
 *           data-api-base="/api/v1/"></script>
 *
 * With data-api-base on its script tag, the script renders every element with a data-user-id
 * once the page has loaded; PresenceDot.render({apiBase, root}) renders again (after live
 * updates, say) and returns a promise of the members it read. It reads GET directory/members
 * with the site's session, page by page (200 members a page, at most MAX_PAGES pages), until it
 * has every user it was asked for. Each element gets the same class, role, aria-label and title
 * as the {% presence_dot %} template tag renders; a user the listing does not return (a bot, a
 * deactivated or inaccessible user) gets "offline".
 */
(function () {
  "use strict";

  var PAGE_SIZE = 200;
  var MAX_PAGES = 50;
  var LAST_SEEN_MINUTES = 60;
  var STATUSES = ["active", "idle", "offline"];

  function dotFor(member, nowSeconds) {
    if (!member || member.status === "never") {
      return { status: "offline", title: "offline" };
    }
    if (member.status === "active") {
      return { status: "active", title: "active now" };
    }
    if (member.status === "idle") {
      return { status: "idle", title: "idle" };
    }
    var seen = Math.max(member.active_timestamp || 0, member.idle_timestamp || 0);
    var minutes = Math.floor((nowSeconds - seen) / 60);
    if (!seen || minutes >= LAST_SEEN_MINUTES) {
      return { status: "offline", title: "offline" };
    }
    minutes = Math.max(minutes, 1);
    return {
      status: "offline",
      title: "last seen " + minutes + (minutes === 1 ? " minute ago" : " minutes ago"),
    };
  }

  function paint(element, dot) {
    STATUSES.forEach(function (status) {
      element.classList.remove("presence-dot--" + status);
    });
    element.classList.add("presence-dot", "presence-dot--" + dot.status);
    element.setAttribute("role", "img");
    element.setAttribute("aria-label", dot.title);
    element.setAttribute("title", dot.title);
  }

  function fetchPage(apiBase, page) {
    var url = apiBase.replace(/\/?$/, "/") + "directory/members?page=" + page +
      "&page_size=" + PAGE_SIZE;
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (body.result !== "success") {
            throw new Error("directory/members: " + body.msg);
          }
          return body;
        });
      });
  }

  function readMembers(apiBase, wanted) {
    var found = {};
    var missing = Object.keys(wanted).length;

    function read(page) {
      return fetchPage(apiBase, page).then(function (body) {
        body.members.forEach(function (member) {
          if (wanted[member.user_id] && !found[member.user_id]) {
            found[member.user_id] = member;
            missing -= 1;
          }
        });
        var more = page * PAGE_SIZE < body.count;
        return missing > 0 && more && page < MAX_PAGES ? read(page + 1) : found;
      });
    }

    return missing > 0 ? read(1) : Promise.resolve(found);
  }

  function render(options) {
    var root = options.root || document;
    var elements = Array.prototype.slice.call(root.querySelectorAll("[data-user-id]"));
    var wanted = {};
    elements.forEach(function (element) {
      wanted[element.getAttribute("data-user-id")] = true;
    });
    return readMembers(options.apiBase, wanted).then(function (found) {
      var nowSeconds = Date.now() / 1000;
      elements.forEach(function (element) {
        paint(element, dotFor(found[element.getAttribute("data-user-id")], nowSeconds));
      });
      return found;
    });
  }

  window.PresenceDot = { render: render, dotFor: dotFor };

  var script = document.currentScript;
  var apiBase = script && script.getAttribute("data-api-base");
  if (apiBase) {
    var start = function () {
      render({ apiBase: apiBase }).catch(function (error) {
        console.error(error);
      });
    };
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", start);
    } else {
      start();
    }
  }
})();
