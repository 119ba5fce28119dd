// omnicart for WooCommerce: tells omnicart about a signed-in customer's checkout, so that an
// abandoned one can be followed up (WooCommerce has no checkout webhook). Include it on the checkout
// page with the customer's id and token (docs/CONNECTORS.md):
//   <script async src="https://OMNICART/woocommerce/checkout.js"
//           data-customer="ID" data-token="HMAC-SHA256(secret, ID) in hex"></script>
// It reads the cart from the shop's own Store API and posts it as it is; omnicart maps it.
(function () {
  var script = document.currentScript;
  var customer = script && script.getAttribute("data-customer");
  var token = script && script.getAttribute("data-token");
  if (!customer || !token || customer === "0") return; // a guest: nothing omnicart can use yet
  var endpoint = new URL("/v1/woocommerce/checkout", script.src).href;
  fetch("/wp-json/wc/store/v1/cart", { credentials: "same-origin" })
    .then(function (response) { return response.ok ? response.json() : null; })
    .then(function (cart) {
      if (!cart || !cart.items || !cart.items.length) return;
      // text/plain keeps this a "simple" CORS request: no preflight; omnicart checks the Origin.
      return fetch(endpoint, {
        method: "POST",
        mode: "cors",
        keepalive: true,
        headers: { "Content-Type": "text/plain" },
        body: JSON.stringify({ customer_id: customer, token: token, cart: cart }),
      });
    })
    .catch(function () { /* never break the shop's checkout */ });
})();
