/*
 * Presence dots for any page of the host site, with no dependency (docs/directory.md).
 *
 *   <span data-user-id="10"></span>                     a dot
 *   <span data-user-id="10" data-presence-text></span>  its words: "active now", "idle", ...
 *   <script src="{% static 'django_presence/presence-dot.js' %}"
 *           data-api-base="/api/v1/"></script>
 *
 * The script reads GET directory/members with the site's session, asking for the users of the
 * page's elements by id (user_ids, 200 a request), and keeps each user's two timestamps. Status
 * follows from them and the server's clock, as the server decides it: so a timer can move a dot
 * from active to idle to offline at the moment the server would, with no request. With
 * data-api-base on its script tag, the script renders once the page has loaded, repaints every
 * second and reads the listing again every data-refresh-seconds (60 by default).
 *
 * window.PresenceDot, for pages that do more (the example project's team directory):
 *   render({apiBase, root})  read the listing for root's elements, then paint them; a promise
 *                            of {user_id: member} for the users the listing returned
 *   learn(body)              take in a directory/members response (members and server clock)
 *   applyPresences(presences)  take in Zulip's modern presences, {user_id: {active_timestamp,
 *                            idle_timestamp}} (POST users/me/presence with last_update_id);
 *                            returns the ids of the users it changed
 *   applyEvent(event)        the same for a presence event of a queue registered with
 *                            client_capabilities {"simplified_presence_events": true}
 *   paint(root)              repaint root's elements from what is known, at the server's now
 *   currentStatus(userId)    "active", "idle", "offline" or "never" at the server's now
 *   statusOf(member, now, threshold), dotFor(member, now, threshold), serverNow()
 *   statusWords(userStatus)  a member's user_status in words: "🚗 on vacation", with
 *                            " (until <time>)" when the status carries its end time (the
 *                            listing gives it to its owner only); "" without a status
 *   applyUserStatusEvent(event)  a user_status event applied to the known members' statuses;
 *                            returns the ids of the users it changed
 *
 * Each dot gets the same class, role, aria-label and title as the {% presence_dot %} template
 * tag renders; a user the listing does not return (a bot, a deactivated or inaccessible user)
 * is "offline".
 */
(function () {
  "use strict";

  var BATCH_SIZE = 200; // the listing's largest page and its largest user_ids list
  var MINUTES_PER_HOUR = 60;
  var HOURS_PER_DAY = 24;
  var DEFAULT_THRESHOLD_SECONDS = 200; // PRESENCE_OFFLINE_THRESHOLD_SECS's default
  var DEFAULT_REFRESH_SECONDS = 60;
  var STATUSES = ["active", "idle", "offline"];

  // user id (a string) -> a listing's member {user_id, active_timestamp, idle_timestamp, ...},
  // plus knownAt: the server time its timestamps were read at
  var members = {};
  var clockOffsetSeconds = 0; // the server's clock minus this browser's
  var thresholdSeconds = DEFAULT_THRESHOLD_SECONDS;

  function serverNow() {
    return Date.now() / 1000 + clockOffsetSeconds;
  }

  function isRecent(timestamp, now, threshold) {
    return timestamp !== null && timestamp !== undefined && now - timestamp < threshold;
  }

  // The server's rule (status.presence_status; tests/test_status.py runs both on one table of
  // cases): active if the last active report is younger than the offline threshold, else idle
  // if the last connection is, else offline; "never" without any report.
  function statusOf(member, now, threshold) {
    if (!member || (member.active_timestamp == null && member.idle_timestamp == null)) {
      return "never";
    }
    if (isRecent(member.active_timestamp, now, threshold)) {
      return "active";
    }
    return isRecent(member.idle_timestamp, now, threshold) ? "idle" : "offline";
  }

  function dotFor(member, now, threshold) {
    var status = statusOf(member, now, threshold);
    if (status === "active") {
      return { status: "active", title: "active now" };
    }
    if (status === "idle") {
      return { status: "idle", title: "idle" };
    }
    if (status === "never") {
      return { status: "offline", title: "offline" };
    }
    var seen = Math.max(member.active_timestamp || 0, member.idle_timestamp || 0);
    return { status: "offline", title: lastSeen(Math.floor((now - seen) / 60)) };
  }

  // The template tag's rule (templatetags/presence.py last_seen): minutes under an hour (at
  // least 1), hours under a day, then days, each rounded down.
  function lastSeen(minutes) {
    var count = Math.max(minutes, 1);
    var unit = "minute";
    if (minutes >= MINUTES_PER_HOUR) {
      count = Math.floor(minutes / MINUTES_PER_HOUR);
      unit = "hour";
      if (count >= HOURS_PER_DAY) {
        count = Math.floor(count / HOURS_PER_DAY);
        unit = "day";
      }
    }
    return "last seen " + count + " " + unit + (count === 1 ? "" : "s") + " ago";
  }

  // A status in words, as the template tag's status_words: the emoji (the character of a
  // Unicode emoji, else :name:), the text, and the end time when the status carries one.
  function statusWords(userStatus) {
    if (!userStatus) {
      return "";
    }
    var parts = [];
    if (userStatus.emoji_name) {
      parts.push(userStatus.reaction_type === "unicode_emoji"
        ? userStatus.emoji_code.split("-").map(function (hex) {
          return String.fromCodePoint(parseInt(hex, 16));
        }).join("")
        : ":" + userStatus.emoji_name + ":");
    }
    if (userStatus.status_text) {
      parts.push(userStatus.status_text);
    }
    var words = parts.join(" ");
    if (words && typeof userStatus.scheduled_end_time === "number") {
      words += " (until " + new Date(userStatus.scheduled_end_time * 1000).toLocaleString() + ")";
    }
    return words;
  }

  // Zulip's rule for applying a user_status event to a status: away true sets it, false
  // removes it; an empty text or emoji name removes them; scheduled_end_time null removes it.
  function applyUserStatusEvent(event) {
    if (event.type !== "user_status") {
      return [];
    }
    var userId = String(event.user_id);
    var member = members[userId] || { user_id: event.user_id };
    var status = Object.assign({}, member.user_status || {});
    if (event.away === true) {
      status.away = true;
    } else if (event.away === false) {
      delete status.away;
    }
    if (typeof event.status_text === "string") {
      if (event.status_text) { status.status_text = event.status_text; } else { delete status.status_text; }
    }
    if (typeof event.emoji_name === "string") {
      if (event.emoji_name) {
        status.emoji_name = event.emoji_name;
        status.emoji_code = event.emoji_code;
        status.reaction_type = event.reaction_type;
      } else {
        delete status.emoji_name;
        delete status.emoji_code;
        delete status.reaction_type;
      }
    }
    if ("scheduled_end_time" in event) {
      if (event.scheduled_end_time === null) {
        delete status.scheduled_end_time;
      } else {
        status.scheduled_end_time = event.scheduled_end_time;
      }
    }
    member.user_status = status;
    member.statusKnownAt = serverNow();
    members[userId] = member;
    return [event.user_id];
  }

  function userStatusOf(userId) {
    var member = members[String(userId)];
    return member ? member.user_status : undefined;
  }

  function paintElement(element, dot) {
    if (element.hasAttribute("data-presence-text")) {
      if (element.textContent !== dot.title) {
        element.textContent = dot.title;
      }
      return;
    }
    STATUSES.forEach(function (status) {
      if (status !== dot.status) {
        element.classList.remove("presence-dot--" + status);
      }
    });
    element.classList.add("presence-dot", "presence-dot--" + dot.status);
    element.setAttribute("role", "img");
    element.setAttribute("aria-label", dot.title);
    element.setAttribute("title", dot.title);
  }

  function elementsOf(root) {
    return Array.prototype.slice.call((root || document).querySelectorAll("[data-user-id]"));
  }

  function currentStatus(userId) {
    return statusOf(members[String(userId)], serverNow(), thresholdSeconds);
  }

  function paint(root) {
    var now = serverNow();
    elementsOf(root).forEach(function (element) {
      var member = members[element.getAttribute("data-user-id")];
      paintElement(element, dotFor(member, now, thresholdSeconds));
    });
  }

  function learn(body) {
    if (typeof body.server_timestamp === "number") {
      clockOffsetSeconds = body.server_timestamp - Date.now() / 1000;
    }
    if (typeof body.server_presence_offline_threshold_seconds === "number") {
      thresholdSeconds = body.server_presence_offline_threshold_seconds;
    }
    var readAt = typeof body.server_timestamp === "number" ? body.server_timestamp : serverNow();
    body.members.forEach(function (member) {
      var known = members[String(member.user_id)];
      // An event applied after the server read this listing is newer than the listing.
      if (known && known.knownAt > readAt) {
        member.active_timestamp = known.active_timestamp;
        member.idle_timestamp = known.idle_timestamp;
        member.knownAt = known.knownAt;
      } else {
        member.knownAt = readAt;
      }
      // A status applied from an event after this listing was read is newer too.
      if (known && known.statusKnownAt > readAt) {
        member.user_status = known.user_status;
        member.statusKnownAt = known.statusKnownAt;
      }
      members[String(member.user_id)] = member;
    });
  }

  function applyPresences(presences) {
    var now = serverNow();
    return Object.keys(presences).map(function (userId) {
      var presence = presences[userId];
      var member = members[userId] || { user_id: Number(userId) };
      // Overwrite, never keep the newer: invisible mode moves the timestamps back.
      member.active_timestamp = presence.active_timestamp;
      member.idle_timestamp = presence.idle_timestamp;
      member.knownAt = now;
      members[userId] = member;
      return Number(userId);
    });
  }

  function applyEvent(event) {
    return event.type === "presence" && event.presences ? applyPresences(event.presences) : [];
  }

  function fetchMembers(apiBase, userIds) {
    var url = apiBase.replace(/\/?$/, "/") + "directory/members?page_size=" + BATCH_SIZE +
      "&user_ids=" + encodeURIComponent(JSON.stringify(userIds));
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

  function render(options) {
    var root = options.root || document;
    var ids = [];
    elementsOf(root).forEach(function (element) {
      var id = Number(element.getAttribute("data-user-id"));
      if (Number.isInteger(id) && id > 0 && ids.indexOf(id) === -1) {
        ids.push(id);
      }
    });
    var batches = [];
    for (var start = 0; start < ids.length; start += BATCH_SIZE) {
      batches.push(fetchMembers(options.apiBase, ids.slice(start, start + BATCH_SIZE)));
    }
    return Promise.all(batches).then(function (bodies) {
      var found = {};
      bodies.forEach(function (body) {
        learn(body);
        body.members.forEach(function (member) {
          found[member.user_id] = member;
        });
      });
      paint(root);
      return found;
    });
  }

  window.PresenceDot = {
    render: render,
    learn: learn,
    applyPresences: applyPresences,
    applyEvent: applyEvent,
    paint: paint,
    currentStatus: currentStatus,
    statusOf: statusOf,
    dotFor: dotFor,
    serverNow: serverNow,
    statusWords: statusWords,
    applyUserStatusEvent: applyUserStatusEvent,
    userStatusOf: userStatusOf,
  };

  var script = document.currentScript;
  var apiBase = script && script.getAttribute("data-api-base");
  if (apiBase) {
    var refreshSeconds =
      Number(script.getAttribute("data-refresh-seconds")) || DEFAULT_REFRESH_SECONDS;
    var refresh = function () {
      render({ apiBase: apiBase }).catch(function (error) {
        console.error(error);
      });
    };
    var start = function () {
      refresh();
      setInterval(paint, 1000);
      setInterval(refresh, refreshSeconds * 1000);
    };
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", start);
    } else {
      start();
    }
  }
})();
