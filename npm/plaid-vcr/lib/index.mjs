// The ES module form of plaid-vcr's API (the same objects as the CommonJS form).
import api from './index.js';

export const { startPlaidVcr, connectPlaidVcr, binaryPath, sessionName, PlaidVcr, MODES } = api;
export default api;
