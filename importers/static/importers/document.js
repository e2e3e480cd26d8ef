// Unfold or fold every part of an entity's document at once (each part also folds on its own).
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest(".wikidata-document [data-fold]");
  if (!button) return;
  const open = button.dataset.fold === "open";
  for (const details of button.closest(".wikidata-document").querySelectorAll("details")) {
    details.open = open;
  }
});
