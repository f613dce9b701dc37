// The slow key derivations (600,000 PBKDF2 rounds), once per passphrase and
// salt for the whole test file: sessions under test take this as their kdf.
import { deriveMasterV1, deriveMasterV2 } from "../../chatsvc/web/crypto.js";

const cache = new Map();
const once = (id, make) => {
  if (!cache.has(id)) cache.set(id, make());
  return cache.get(id);
};

export const kdf = {
  v1: (passphrase) => once(`v1 ${passphrase}`, () => deriveMasterV1(passphrase)),
  v2: (passphrase, salt) => once(`v2 ${passphrase} ${salt}`, () => deriveMasterV2(passphrase, salt)),
};
