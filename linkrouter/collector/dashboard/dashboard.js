/*
 * The linkrouter dashboard: fetches v1/stats from the collector that served this page and
 * draws it. No build step, no library, nothing from another origin.
 *
 * Every string in the stats is attacker-controlled (destination URLs, user agents, tags): the
 * page is built with createElement, textContent and setAttribute only, never parsed as markup.
 */
"use strict";

(function () {
  // First, so the test (and a user) can see any error this script did not expect.
  function recordUncaught(message) {
    const list = document.getElementById("errors");
    if (list === null) {
      return;
    }
    const item = document.createElement("li");
    item.textContent = String(message);
    list.append(item);
    document.getElementById("uncaught").hidden = false;
    document.documentElement.dataset.uncaught = String(list.childElementCount);
  }
  window.onerror = function (message, source, line, column) {
    recordUncaught(`${message} (${source}:${line}:${column})`);
  };
  window.onunhandledrejection = function (event) {
    recordUncaught(`Unhandled rejection: ${event.reason}`);
  };

  const FIELDS = ["from", "to", "tag", "message", "link", "bucket", "top"];
  const DEFAULTS = { bucket: "hour", top: "10" };
  const HOUR = 3600 * 1000;
  const DAY = 24 * HOUR;
  const SVG_NS = "http://www.w3.org/2000/svg"; // a namespace name, never fetched
  const numbers = new Intl.NumberFormat();
  const percents = new Intl.NumberFormat(undefined, {
    style: "percent",
    maximumFractionDigits: 1,
  });
  const dayLabel = new Intl.DateTimeFormat(undefined, {
    month: "short",
    day: "numeric",
    timeZone: "UTC",
  });
  const hourLabel = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZone: "UTC",
  });
  let regions = null;
  try {
    regions = new Intl.DisplayNames(undefined, { type: "region" });
  } catch (error) {
    regions = null; // an old browser: country codes stay codes
  }

  let split = "kind";
  let lastData = null;
  let generation = 0;
  let inFlight = null;

  // ---- small helpers ---------------------------------------------------------------------

  /** An element with attributes and children; strings become text nodes, never markup. */
  function h(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined && value !== false) {
        element.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        element.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return element;
  }

  function svg(tag, attributes, ...children) {
    const element = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      element.setAttribute(name, String(value));
    }
    for (const child of children) {
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  function count(value) {
    const n = Number(value);
    return Number.isFinite(n) && n > 0 ? n : 0;
  }

  function text(value, fallback) {
    return typeof value === "string" && value !== "" ? value : fallback;
  }

  function formatNumber(value) {
    return numbers.format(count(value));
  }

  function share(part, whole) {
    return whole > 0 ? percents.format(part / whole) : "–";
  }

  /** "2026-12-01 10:02 UTC" (or the day alone), or the string as given if it is no date. */
  function formatTime(value, dayOnly) {
    if (typeof value !== "string" || value === "") {
      return "–";
    }
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) {
      return value;
    }
    const iso = date.toISOString();
    return dayOnly ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
  }

  function countryName(code) {
    if (regions !== null && /^[A-Z]{2}$/.test(code)) {
      try {
        const name = regions.of(code);
        if (name && name !== code) {
          return `${name} (${code})`;
        }
      } catch (error) {
        return code;
      }
    }
    return code;
  }

  function partName(name) {
    return { html: "HTML", text: "Text" }[name] || name;
  }

  function clear(element) {
    element.replaceChildren();
    return element;
  }

  // ---- the query: URL <-> form -------------------------------------------------------------

  const form = document.getElementById("filters");

  function queryFromLocation() {
    const params = new URLSearchParams(window.location.search);
    const query = {};
    for (const field of FIELDS) {
      query[field] = params.get(field) || "";
    }
    return query;
  }

  function fillForm(query) {
    for (const field of FIELDS) {
      const input = form.elements.namedItem(field);
      const value = query[field] || DEFAULTS[field] || "";
      if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === value)) {
        input.append(h("option", { value: value }, value)); // a shared URL with another value
      }
      input.value = value;
    }
  }

  /** The form's filters as a query string, without empty fields and defaults. */
  function queryStringFromForm() {
    const params = new URLSearchParams();
    for (const field of FIELDS) {
      const value = form.elements.namedItem(field).value.trim();
      if (value !== "" && value !== DEFAULTS[field]) {
        params.set(field, value);
      }
    }
    return params.toString();
  }

  function apply() {
    const query = queryStringFromForm();
    const url = query === "" ? window.location.pathname : `?${query}`;
    if (url !== window.location.pathname + window.location.search) {
      window.history.pushState(null, "", url);
    }
    load(query);
  }

  function describeScope(query) {
    const parts = [];
    if (query.from || query.to) {
      parts.push(`${query.from || "the beginning"} to ${query.to || "now"}`);
    } else {
      parts.push("All time");
    }
    for (const field of ["tag", "message", "link"]) {
      if (query[field]) {
        parts.push(`${field} ${query[field]}`);
      }
    }
    parts.push(`by ${query.bucket || DEFAULTS.bucket}`);
    return parts.join(" · ");
  }

  // ---- fetching --------------------------------------------------------------------------

  function setStatus(message, kind) {
    const status = document.getElementById("status");
    status.textContent = message;
    status.className = `status ${kind || ""}`.trim();
  }

  async function errorMessage(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = typeof body.error === "string" ? body.error : "";
    } catch (error) {
      detail = "";
    }
    const suffix = detail ? `: ${detail}` : "";
    if (response.status === 401 || response.status === 403) {
      return (
        `Not allowed to read the stats (HTTP ${response.status}${suffix}). ` +
        "Reload the page and sign in with a reader token as the password."
      );
    }
    if (response.status >= 500) {
      return `The collector failed to answer (HTTP ${response.status}${suffix}). Try again later.`;
    }
    return `The collector refused the query (HTTP ${response.status}${suffix}).`;
  }

  async function load(queryString) {
    const ticket = ++generation;
    if (inFlight !== null) {
      inFlight.abort();
    }
    const controller = new AbortController();
    inFlight = controller;
    document.documentElement.dataset.state = "loading";
    setStatus("Loading…", "busy");
    document.getElementById("scope").textContent = describeScope(queryFromLocation());
    let data;
    try {
      const response = await fetch(`v1/stats${queryString ? `?${queryString}` : ""}`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        signal: controller.signal,
      });
      if (!response.ok) {
        const message = await errorMessage(response);
        if (ticket === generation) {
          fail(message);
        }
        return;
      }
      data = await response.json();
    } catch (error) {
      if (ticket === generation && error.name !== "AbortError") {
        fail(
          error instanceof SyntaxError
            ? "The collector's answer was not valid JSON."
            : `Cannot reach the collector (${error.message}).`
        );
      }
      return;
    }
    if (ticket !== generation) {
      return;
    }
    if (data === null || typeof data !== "object" || typeof data.totals !== "object") {
      fail("The collector's answer has no totals: is this the stats API?");
      return;
    }
    lastData = data;
    render(data);
    const total = count(data.totals.clicks) + count(data.totals.opens);
    setStatus(
      total === 0
        ? "No clicks or opens match these filters."
        : `Updated ${formatTime(new Date().toISOString())}.`,
      total === 0 ? "empty" : ""
    );
    document.documentElement.dataset.state = "ready";
  }

  function fail(message) {
    lastData = null;
    document.getElementById("report").hidden = true;
    setStatus(message, "error");
    document.documentElement.dataset.state = "error";
  }

  // ---- drawing ---------------------------------------------------------------------------

  function render(data) {
    document.getElementById("report").hidden = false;
    renderTotals(data.totals);
    renderSeries(list(data.series), bucketOf(data));
    renderLinks(list(data.links));
    renderBreakdown("browsers", list(data.browsers), "Browser");
    renderBreakdown("platforms", list(data.platforms), "Platform");
    renderBreakdown("os", list(data.os), "Operating system");
    renderBreakdown("countries", list(data.countries), "Country", countryName);
    renderBreakdown("parts", list(data.parts), "Part", partName);
    renderBreakdown(
      "bots",
      list(data.bots).map((row) => ({ name: row.reason, total: row.events })),
      "Reason",
      null,
      true
    );
  }

  function list(value) {
    return Array.isArray(value) ? value.filter((row) => row && typeof row === "object") : [];
  }

  function bucketOf(data) {
    const bucket = data.query && data.query.bucket;
    return bucket === "day" ? "day" : "hour";
  }

  function renderTotals(totals) {
    const human = count(totals.human);
    const bot = count(totals.bot);
    const events = human + bot;
    const stats = [
      ["clicks", "Clicks", formatNumber(totals.clicks), null],
      ["unique_clicks", "Unique clicks", formatNumber(totals.unique_clicks), "distinct links"],
      ["opens", "Opens", formatNumber(totals.opens), null],
      ["unique_opens", "Unique opens", formatNumber(totals.unique_opens), "distinct messages"],
      ["human", "Human", share(human, events), `${formatNumber(human)} events`],
      ["bot", "Bot", share(bot, events), `${formatNumber(bot)} events`],
      ["first_click", "First click", formatTime(totals.first_click), null],
      ["last_click", "Last click", formatTime(totals.last_click), null],
    ];
    const totalsList = clear(document.getElementById("totals"));
    for (const [key, label, value, note] of stats) {
      const isTime = key.endsWith("_click");
      totalsList.append(
        h(
          "div",
          { class: isTime ? "stat time" : "stat", "data-stat": key },
          h("dt", {}, label),
          h(
            "dd",
            {},
            h("span", { class: "value", "data-value": isTime ? null : count(totals[key]) }, value),
            note ? h("span", { class: "note" }, note) : null
          )
        )
      );
    }
    const audience = clear(document.getElementById("audience"));
    const bar = h("div", {
      class: "split",
      role: "img",
      "aria-label": `Human ${share(human, events)}, bot ${share(bot, events)} of ${formatNumber(
        events
      )} events`,
    });
    const humanPart = h("span", { class: "human" });
    const botPart = h("span", { class: "bot" });
    humanPart.style.width = `${events ? (100 * human) / events : 0}%`;
    botPart.style.width = `${events ? (100 * bot) / events : 0}%`;
    bar.append(humanPart, botPart);
    audience.append(
      bar,
      h(
        "p",
        { class: "key" },
        h("span", { class: "swatch human", "aria-hidden": "true" }),
        `Human ${share(human, events)}`,
        h("span", { class: "swatch bot", "aria-hidden": "true" }),
        `Bot ${share(bot, events)}`
      )
    );
  }

  const SPLITS = {
    kind: [
      ["clicks", "Clicks"],
      ["opens", "Opens"],
    ],
    audience: [
      ["human", "Human"],
      ["bot", "Bot"],
    ],
  };

  /** Round numbers from 0 to at least max, about four steps. */
  function ticks(max) {
    if (max <= 0) {
      return [0, 1];
    }
    const rough = max / 4;
    const magnitude = 10 ** Math.floor(Math.log10(rough));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
    const result = [];
    for (let value = 0; value < max + step; value += step) {
      result.push(value);
    }
    return result;
  }

  function renderSeries(series, bucket) {
    const step = bucket === "day" ? DAY : HOUR;
    const points = series
      .map((point) => ({ ...point, time: Date.parse(point.start) }))
      .filter((point) => Number.isFinite(point.time))
      .sort((a, b) => a.time - b.time);
    renderLegend();
    renderSeriesTable(points, bucket);
    const figure = clear(document.getElementById("series"));
    figure.dataset.points = String(points.length);
    if (points.length === 0) {
      figure.append(h("p", { class: "nothing" }, "No events in this range."));
      return;
    }
    const width = Math.max(320, Math.round(figure.clientWidth || 900));
    const height = width < 560 ? 200 : 260;
    const margin = { top: 12, right: 8, bottom: 26, left: 44 };
    const plotWidth = width - margin.left - margin.right;
    const plotHeight = height - margin.top - margin.bottom;
    const start = points[0].time;
    const end = points[points.length - 1].time + step;
    const slots = Math.max(1, Math.round((end - start) / step));
    const slotWidth = plotWidth / slots;
    const barWidth = Math.max(1, Math.min(slotWidth * (slotWidth > 4 ? 0.8 : 1), 48));
    const [lower, upper] = SPLITS[split];
    const max = Math.max(...points.map((p) => count(p[lower[0]]) + count(p[upper[0]])));
    const yTicks = ticks(max);
    const top = yTicks[yTicks.length - 1];
    const y = (value) => margin.top + plotHeight - (plotHeight * value) / top;
    const x = (time) => margin.left + ((time - start) / step) * slotWidth;

    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width: width,
      height: height,
      role: "img",
      "aria-labelledby": "series-title series-summary",
      class: "series",
    });
    const totalEvents = points.reduce((sum, p) => sum + count(p.clicks) + count(p.opens), 0);
    chart.append(
      svg(
        "desc",
        { id: "series-summary" },
        `${formatNumber(totalEvents)} events in ${points.length} ${bucket}s with events, ` +
          `from ${formatTime(points[0].start, bucket === "day")} ` +
          `to ${formatTime(points[points.length - 1].start, bucket === "day")}; ` +
          "the data table below lists them."
      ),
      svg(
        "defs",
        {},
        svg(
          "pattern",
          {
            id: "hatch",
            patternUnits: "userSpaceOnUse",
            width: 5,
            height: 5,
            patternTransform: "rotate(45)",
          },
          svg("rect", { width: 5, height: 5, class: "hatch-ground" }),
          svg("line", { x1: 0, y1: 0, x2: 0, y2: 5, class: "hatch-line" })
        )
      )
    );
    const axis = svg("g", { class: "axis", "aria-hidden": "true" });
    for (const value of yTicks) {
      axis.append(
        svg("line", {
          x1: margin.left,
          x2: width - margin.right,
          y1: y(value),
          y2: y(value),
          class: value === 0 ? "baseline" : "grid",
        }),
        svg(
          "text",
          { x: margin.left - 6, y: y(value) + 4, "text-anchor": "end" },
          numbers.format(value)
        )
      );
    }
    const labelEvery = Math.max(1, Math.ceil(slots / Math.max(2, Math.floor(plotWidth / 90))));
    const short = bucket === "hour" && end - start <= 2 * DAY;
    for (let slot = 0; slot < slots; slot += labelEvery) {
      const time = start + slot * step;
      const label = short
        ? hourLabel.format(time)
        : dayLabel.format(time) + (bucket === "hour" ? ` ${hourLabel.format(time)}` : "");
      axis.append(
        svg(
          "text",
          { x: x(time) + slotWidth / 2, y: height - 8, "text-anchor": "middle" },
          label
        )
      );
    }
    chart.append(axis);
    const bars = svg("g", { class: "bars" });
    for (const point of points) {
      const low = count(point[lower[0]]);
      const high = count(point[upper[0]]);
      const left = x(point.time) + (slotWidth - barWidth) / 2;
      const group = svg("g", { class: "bar", "data-start": point.start });
      group.append(
        svg(
          "title",
          {},
          `${formatTime(point.start, bucket === "day")}: ${formatNumber(point.clicks)} clicks, ` +
            `${formatNumber(point.opens)} opens; ${formatNumber(point.human)} human, ` +
            `${formatNumber(point.bot)} bot`
        ),
        svg("rect", {
          x: left,
          width: barWidth,
          y: y(low),
          height: Math.max(0, y(0) - y(low)),
          class: "lower",
        }),
        svg("rect", {
          x: left,
          width: barWidth,
          y: y(low + high),
          height: Math.max(0, y(low) - y(low + high)),
          class: "upper",
        })
      );
      bars.append(group);
    }
    chart.append(bars);
    figure.append(chart);
  }

  function renderLegend() {
    const [lower, upper] = SPLITS[split];
    const legend = clear(document.getElementById("series-legend"));
    legend.append(
      h("span", { class: "swatch lower", "aria-hidden": "true" }),
      lower[1],
      h("span", { class: "swatch upper", "aria-hidden": "true" }),
      `${upper[1]} (hatched)`
    );
    for (const button of document.querySelectorAll("[data-split]")) {
      button.setAttribute("aria-pressed", String(button.dataset.split === split));
    }
  }

  function renderSeriesTable(points, bucket) {
    const table = clear(document.getElementById("series-table"));
    table.append(
      h("caption", { class: "visually-hidden" }, `Events per ${bucket}`),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, bucket === "day" ? "Day (UTC)" : "Hour (UTC)"),
          ...["Clicks", "Opens", "Human", "Bot"].map((name) =>
            h("th", { scope: "col", class: "num" }, name)
          )
        )
      )
    );
    const body = h("tbody", {});
    for (const point of points) {
      body.append(
        h(
          "tr",
          {},
          h("th", { scope: "row" }, formatTime(point.start, bucket === "day")),
          ...["clicks", "opens", "human", "bot"].map((key) =>
            h("td", { class: "num", "data-value": count(point[key]) }, formatNumber(point[key]))
          )
        )
      );
    }
    table.append(body);
  }

  function renderLinks(links) {
    const table = clear(document.getElementById("links"));
    table.append(
      h("caption", { class: "visually-hidden" }, "The most clicked links"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Destination"),
          h("th", { scope: "col", class: "num" }, "Clicks"),
          h("th", { scope: "col", class: "num" }, "Human"),
          h("th", { scope: "col", class: "num" }, "Bot"),
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Filter"))
        )
      )
    );
    const body = h("tbody", {});
    if (links.length === 0) {
      body.append(h("tr", {}, h("td", { colspan: 5, class: "nothing" }, "No links clicked.")));
    }
    const most = Math.max(1, ...links.map((row) => count(row.clicks)));
    for (const row of links) {
      const id = text(row.link, "?");
      const url = typeof row.url === "string" ? row.url : null;
      // Shown as text, never as a link: a destination is whatever the sender's mail held.
      const destination = h(
        "th",
        { scope: "row", class: "destination" },
        url === null
          ? h("span", { class: "url unregistered" }, "Not registered")
          : h("span", { class: "url", title: url }, url),
        h("span", { class: "link-id" }, id)
      );
      const meter = h("span", { class: "meter", "aria-hidden": "true" });
      const fill = h("span", {});
      fill.style.width = `${(100 * count(row.clicks)) / most}%`;
      meter.append(fill);
      destination.append(meter);
      const filter = h(
        "button",
        {
          type: "button",
          class: "small",
          "data-link": id,
          "aria-label": `Show only link ${id}`,
        },
        "Only this"
      );
      filter.addEventListener("click", () => {
        form.elements.namedItem("link").value = id;
        apply();
      });
      body.append(
        h(
          "tr",
          { "data-link": id },
          destination,
          h("td", { class: "num", "data-value": count(row.clicks) }, formatNumber(row.clicks)),
          h("td", { class: "num", "data-value": count(row.human) }, formatNumber(row.human)),
          h("td", { class: "num", "data-value": count(row.bot) }, formatNumber(row.bot)),
          h("td", {}, filter)
        )
      );
    }
    table.append(body);
  }

  /** A table whose rows carry their bar: the chart and its accessible form are one. */
  function renderBreakdown(id, rows, heading, nameOf, totalOnly) {
    const table = clear(document.getElementById(id));
    const columns = totalOnly ? ["Events"] : ["Total", "Human", "Bot"];
    table.append(
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, heading),
          h("th", { scope: "col", class: "bar-col" }, h("span", { class: "visually-hidden" }, "Share")),
          ...columns.map((name) => h("th", { scope: "col", class: "num" }, name))
        )
      )
    );
    const body = h("tbody", {});
    if (rows.length === 0) {
      body.append(
        h("tr", {}, h("td", { colspan: columns.length + 2, class: "nothing" }, "Nothing yet."))
      );
    }
    const sum = rows.reduce((total, row) => total + count(row.total), 0);
    const most = Math.max(1, ...rows.map((row) => count(row.total)));
    for (const row of rows) {
      const raw = text(row.name, "Unknown");
      const name = nameOf ? nameOf(raw) : raw;
      const total = count(row.total);
      const track = h("span", { class: "track", "aria-hidden": "true" });
      const human = h("span", { class: totalOnly ? "single" : "human" });
      human.style.width = `${(100 * (totalOnly ? total : count(row.human))) / most}%`;
      track.append(human);
      if (!totalOnly) {
        const bot = h("span", { class: "bot" });
        bot.style.width = `${(100 * count(row.bot)) / most}%`;
        track.append(bot);
      }
      const cells = [
        h("td", { class: "num", "data-value": total }, formatNumber(total),
          h("span", { class: "pct" }, ` ${share(total, sum)}`)),
      ];
      if (!totalOnly) {
        cells.push(
          h("td", { class: "num", "data-value": count(row.human) }, formatNumber(row.human)),
          h("td", { class: "num", "data-value": count(row.bot) }, formatNumber(row.bot))
        );
      }
      body.append(
        h(
          "tr",
          { "data-name": raw },
          h("th", { scope: "row", class: raw === "Unknown" ? "unknown" : null }, name),
          h("td", { class: "bar-col" }, track),
          ...cells
        )
      );
    }
    table.append(body);
  }

  // ---- wiring ----------------------------------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  document.getElementById("reset").addEventListener("click", () => {
    fillForm({});
    apply();
  });
  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => {
      const days = Number(button.dataset.range);
      form.elements.namedItem("from").value = days
        ? `${new Date(Date.now() - days * DAY).toISOString().slice(0, 16)}:00Z`
        : "";
      form.elements.namedItem("to").value = "";
      if (button.dataset.bucket) {
        form.elements.namedItem("bucket").value = button.dataset.bucket;
      }
      apply();
    });
  }
  for (const button of document.querySelectorAll("[data-split]")) {
    button.addEventListener("click", () => {
      split = button.dataset.split;
      if (lastData !== null) {
        renderSeries(list(lastData.series), bucketOf(lastData));
      }
    });
  }
  window.addEventListener("popstate", () => {
    fillForm(queryFromLocation());
    load(queryStringFromForm());
  });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(() => {
      if (lastData !== null) {
        renderSeries(list(lastData.series), bucketOf(lastData));
      }
    }, 150);
  });

  fillForm(queryFromLocation());
  load(queryStringFromForm());
})();
