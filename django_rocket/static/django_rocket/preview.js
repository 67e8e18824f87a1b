// The task page's "Preview": ask the admin when the typed start condition would be due.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll(".rocket-preview")) {
    const input = document.getElementById("id_" + box.dataset.field);
    const name = document.getElementById("id_name");
    const result = box.querySelector(".rocket-preview-result");
    const show = async () => {
      const url = new URL(box.dataset.url, window.location.href);
      url.searchParams.set("task", box.dataset.task || (name ? name.value : ""));
      url.searchParams.set("cond", input ? input.value : "");
      const response = await fetch(url, { credentials: "same-origin" });
      const data = await response.json();
      result.replaceChildren();
      if (data.error) {
        const pre = document.createElement("pre");
        pre.className = "rocket-caret rocket-preview-error";
        pre.textContent = data.error;
        result.append(pre);
        return;
      }
      const cond = document.createElement("code");
      cond.className = "rocket-cond";
      cond.textContent = data.condition;
      const p = document.createElement("p");
      p.append(cond);
      result.append(p);
      if (!data.times.length) {
        const empty = document.createElement("p");
        empty.textContent = data.empty;
        result.append(empty);
        return;
      }
      const list = document.createElement("ol");
      list.className = "rocket-preview-times";
      for (const at of data.times) {
        const item = document.createElement("li");
        item.textContent = at;
        list.append(item);
      }
      result.append(list);
    };
    box.querySelector(".rocket-preview-button").addEventListener("click", show);
  }
});
